"""Carry frames over an MQTT 5 broker: one client per node, a topic per inbox, broadcast and interest key.

Topic names are described in :mod:`.topics`, the client in :mod:`.connect`
(the only module that imports aiomqtt, lazily), and the operating side in
``docs/transports/mqtt.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from ..._exceptions import DeliveryUnknown, MessageTooLarge, TransportError
from .._backoff import Backoff
from .._urls import redact
from ..base import FrameHandler, Transport
from .connect import Connector, Session
from .options import MqttOptions, parse_mqtt_url
from .topics import Topics, check_node_id

logger = logging.getLogger("addrbus.transports.mqtt")

#: Rounds of catching up with subscribe()/unsubscribe() calls made while a session was being opened.
MAX_CATCH_UP = 100


def from_url(url: str) -> MqttTransport:
    """Build an :class:`MqttTransport` from an mqtt:// or mqtts:// URL.

    :raises ConfigError: for a bad URL or argument, or when aiomqtt is missing.
    """
    return MqttTransport(url)


class MqttTransport(Transport):
    """Move frames between the nodes of a namespace through an MQTT 5 broker.

    States: ``connected`` once after start; ``disconnected`` when the
    connection breaks (sends then fail fast) or the broker stops answering
    (MQTT keepalive); ``reconnected`` when a new session is up and every
    subscription is granted again. ``reconnected`` stays the healthy state
    from then on: ``connected`` never comes back.
    """

    scheme = "mqtt"
    # The broker cannot tell a client that nobody received a publish: membership pings
    # every node over the broadcast topic and learns of a dead node by its silence.
    needs_heartbeat = True
    knows_listeners = False
    # A topic per interest key (.topics): the broker delivers a publish only to its consumers.
    routes_by_interest = True
    # A shared subscription per interest key (.topics): the broker picks the consumer of a send.
    routes_sends = True
    passes_objects = False

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._opts: MqttOptions = parse_mqtt_url(url)
        self.scheme = url.split(":", 1)[0].lower()
        self.max_frame_size = self._opts.max_frame_size
        self._connector = Connector(self._opts, self.describe())
        self._session: Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wanted: set[str] = set()  # interest topics this node subscribes to
        self._shared: set[str] = set()  # their shared subscriptions (sends and requests)
        self._closed = "not started"
        self._reconnects = 0
        self._sent = 0
        self._received = 0
        self._errors = 0
        self._unknown = 0
        self._in_flight = 0
        self._room = asyncio.Semaphore(self._opts.max_pending)

    def describe(self) -> str:
        """Return the URL without its password."""
        return redact(self._url)

    def stats(self) -> dict[str, int]:
        """Return reconnects, frame counts, send errors and the interest subscriptions."""
        return {
            "reconnects": self._reconnects,
            "frames_sent": self._sent,
            "frames_received": self._received,
            "publish_errors": self._errors,
            "delivery_unknown": self._unknown,
            "pending": self._in_flight,
            "interest_subscriptions": len(self._wanted),
            "shared_subscriptions": len(self._shared),
        }

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Connect, subscribe to this node's inbox and the broadcast topic, and start delivering frames.

        :raises TransportError: if the broker cannot be reached or refuses us.
        """
        if self._supervisor is not None:
            raise TransportError(f"{self.describe()} is already started")
        self._topics = Topics(namespace, check_node_id(node_id))
        self._client_id = self._opts.client_id or f"addrbus-{node_id}"
        self._on_frame = on_frame
        self._room = asyncio.Semaphore(self._opts.max_pending)  # bound to this start's loop
        session = await self._open()
        self._session = session
        self._supervisor = asyncio.create_task(self._supervise(session), name="addrbus-mqtt-supervisor")
        logger.info("connected to %s as node %s (client id %s)", self.describe(), node_id, self._client_id)
        self._report("connected")

    async def stop(self) -> None:
        """Stop reconnecting, fail what is pending and close the session. Idempotent."""
        supervisor, self._supervisor = self._supervisor, None
        session, self._session = self._session, None
        self._closed = "stopped"
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if session is not None:
            await session.close()
            logger.info("disconnected from %s", self.describe())
        # Not through _set_state: the bus asked for this, it is no fault to report.
        self.state = "disconnected"

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Publish ``frame`` on the namespace's broadcast topic; the broker cannot say who got it (None).

        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises DeliveryUnknown: if the client did not hand it over within ``timeout``.
        :raises TransportError: if it was not sent (disconnected, stopped, too many pending).
        """
        await self._send(self._topics.broadcast, frame, timeout)
        return None

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Publish ``frame`` on ``node_id``'s inbox topic; always True (the broker does not say); raise as broadcast."""
        await self._send(self._topics.inbox_of(node_id), frame, timeout)
        return True

    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Publish ``frame`` on the topic of interest key ``key``; raise and return as :meth:`broadcast`."""
        await self._send(self._topics.key(key), frame, timeout)
        return None

    async def subscribe(self, keys: Collection[str]) -> None:
        """Subscribe to the topics of ``keys`` and return once the broker granted them (SUBACK).

        While disconnected the topics are only remembered: the next session
        subscribes them before the transport reports ``reconnected``.

        :raises TransportError: if the broker refused or did not answer in time (they stay wanted).
        """
        keys = list(dict.fromkeys(keys))
        topics = [t for t in map(self._topics.key, keys) if t not in self._wanted]
        shared = [t for t in map(self._topics.shared, keys) if t not in self._shared]
        self._wanted.update(topics)
        self._shared.update(shared)
        session = self._session
        if session is not None:
            if topics:
                await session.subscribe(topics, no_local=True, timeout=self._opts.timeout)
            if shared:  # No Local is a protocol error on a shared subscription
                await session.subscribe(shared, no_local=False, timeout=self._opts.timeout)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Unsubscribe from the topics of ``keys``; never raises."""
        keys = list(dict.fromkeys(keys))
        topics = [t for t in map(self._topics.key, keys) if t in self._wanted]
        topics += [t for t in map(self._topics.shared, keys) if t in self._shared]
        self._wanted.difference_update(topics)
        self._shared.difference_update(topics)
        session = self._session
        if topics and session is not None:
            await session.unsubscribe(topics, self._opts.timeout)

    async def send_any(self, key: str, frame: Any, *, reply: str | None = None,
                       timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Publish ``frame`` on ``key``'s queue topic: the broker hands it to one shared subscriber.

        MQTT has no no-responders status, so ``reply`` is not used: a request
        nobody takes ends at its deadline (the bus's table says ``NoHandlers``
        first whenever it knows).
        """
        await self._send(self._topics.queue(key), frame, timeout)

    # -- inside ----------------------------------------------------------------------

    async def _send(self, topic: str, frame: Any, timeout: float | None) -> None:  # noqa: ASYNC109
        size = len(frame)
        if size > self.max_frame_size:
            raise MessageTooLarge(size, self.max_frame_size, self.scheme)
        within = self._opts.timeout if timeout is None else timeout
        room = self._room
        if room.locked():
            # Callers beyond max_pending wait their turn, in call order (so one
            # sender's frames keep their order), within their own bound.
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                async with asyncio.timeout(within):
                    await room.acquire()
            except TimeoutError:
                self._errors += 1
                raise TransportError(f"{self.describe()}: {self._opts.max_pending} frames pending (max_pending)"
                                     f" for {within} s; frame not sent") from None
            within = max(within - (loop.time() - began), 0.001)
        else:
            await room.acquire()  # free room: returns without suspending
        try:
            session = self._session
            if session is None:
                self._errors += 1
                raise TransportError(f"{self.describe()} is {self._closed}; frame not sent")
            self._in_flight += 1
            try:
                await session.publish(topic, frame, within)
            finally:
                self._in_flight -= 1
            self._sent += 1
        except DeliveryUnknown:
            self._unknown += 1
            raise
        except TransportError:
            self._errors += 1
            raise
        finally:
            room.release()

    def _deliver(self, payload: bytes) -> None:
        """Hand one received frame to the bus (called during paho's read, on the loop)."""
        self._received += 1
        try:
            self._on_frame(payload)
        except Exception:
            logger.exception("frame handler failed on a frame from %s", self.describe())

    async def _open(self) -> Session:
        """Open a session subscribed to the inbox, the broadcast topic and every wanted interest topic."""
        session = await self._connector.open(self._client_id, self._deliver)
        timeout = self._opts.timeout
        fixed = {self._topics.inbox, self._topics.broadcast}
        try:
            await session.subscribe([self._topics.inbox], no_local=False, timeout=timeout)
            await session.subscribe([self._topics.broadcast], no_local=True, timeout=timeout)
            # subscribe()/unsubscribe() calls made meanwhile only changed _wanted: catch up.
            for _ in range(MAX_CATCH_UP):
                more = self._wanted - session.subscribed
                more_shared = self._shared - session.subscribed
                fewer = session.subscribed - self._wanted - self._shared - fixed
                if not more and not more_shared and not fewer:
                    break
                if fewer:
                    await session.unsubscribe(sorted(fewer), timeout)
                if more:
                    await session.subscribe(sorted(more), no_local=True, timeout=timeout)
                if more_shared:
                    await session.subscribe(sorted(more_shared), no_local=False, timeout=timeout)
        except BaseException:
            await session.close()
            raise
        return session

    def _report(self, state: str) -> None:
        try:
            self._set_state(state)
        except Exception:
            logger.exception("state listener failed on %r", state)

    async def _supervise(self, session: Session) -> None:
        """Watch the session; when it ends, open a new one with capped, jittered backoff."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=0.05, cap=0.5)
        while True:
            try:
                # asyncio.wait, not await: cancelling this task must not cancel the watcher,
                # which close() still needs to see the socket's end.
                await asyncio.wait([session.lost])
                reason = session.lost.result()
            finally:
                # Sends fail fast from here on (also when stop() cancels this task).
                self._session = None
                self._closed = "disconnected"
                await session.close()
            self._report("disconnected")
            logger.warning("lost connection to %s (%s); reconnecting", self.describe(), reason)
            lost_at = loop.time()
            backoff.reset()
            while True:
                await asyncio.sleep(backoff.next_delay())
                try:
                    session = await self._open()
                    break
                except TransportError as exc:
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("reconnect attempt %d failed: %s", backoff.attempts, exc)
            self._reconnects += 1
            self._session = session
            logger.info("reconnected to %s after %.2f s", self.describe(), loop.time() - lost_at)
            self._report("reconnected")
