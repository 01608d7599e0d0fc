"""Carry frames over Redis pub/sub: one subscriber and one pipelined publisher per node.

The only module of addrbus that imports :mod:`redis`; it does so lazily, so a
missing package is a :class:`ConfigError` at ``from_url`` time, not at import.
Channel names are described in :mod:`.wire`, the publish path in
:mod:`.publish`, receiver counts that leave out pattern subscribers in
:mod:`.counts`, and the operating side in ``docs/transports/redis.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..._exceptions import ConfigError, MessageTooLarge, TransportError
from .._backoff import Backoff
from .._urls import redact
from ..base import FrameHandler, Transport
from . import wire
from .connect import Connection, Connector, direct_writer, sender
from .counts import Receivers
from .feed import attach
from .interest import Interests
from .options import RedisOptions, parse_redis_url
from .publish import Publisher

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger("addrbus.transports.redis")

_MESSAGE = b"message"
_SUBSCRIBED = b"subscribe"


def _load_redis() -> tuple[ModuleType, ModuleType, object | None]:
    try:
        from redis import exceptions
        from redis.asyncio import connection
    except ImportError as exc:
        raise ConfigError("the Redis transport needs the redis package: pip install 'addrbus[redis]'") from exc
    try:
        # What redis-py's hiredis reader returns for "no complete reply yet";
        # without it (another layout, no hiredis) replies are read the slow way.
        from redis._parsers.hiredis import NOT_ENOUGH_DATA as not_enough
    except ImportError:
        not_enough = None
    return connection, exceptions, not_enough


def from_url(url: str) -> RedisTransport:
    """Build a :class:`RedisTransport` from a redis://, rediss:// or unix:// URL.

    :raises ConfigError: for a bad URL or argument, or when redis-py is missing.
    """
    return RedisTransport(url)


class RedisTransport(Transport):
    """Move frames between the nodes of a namespace through Redis pub/sub.

    States: ``connected`` once after start; ``degraded`` when a heartbeat is
    overdue; ``disconnected`` when a connection breaks (publishes then fail
    fast); ``reconnected`` when healthy again, after either. ``reconnected``
    stays the healthy state from then on: ``connected`` never comes back.
    """

    scheme = "redis"
    needs_heartbeat = True
    # PUBLISH to an inbox reports 0 receivers exactly when its node's connection is gone
    # (pattern subscribers are seen past, .counts): membership watches a ring, not every node.
    knows_listeners = True
    # A channel per interest key (.interest): Redis delivers a publish only to its consumers.
    routes_by_interest = True
    passes_objects = False

    def __init__(self, url: str) -> None:
        super().__init__()
        rconn, rexc, self._not_enough = _load_redis()
        self._url = url
        self._opts: RedisOptions = parse_redis_url(url)
        self.scheme = url.split(":", 1)[0].lower()
        self.max_frame_size = self._opts.max_frame_size
        self._reply_error: type[Exception] = rexc.ResponseError
        classes = {"tcp": rconn.Connection, "tls": rconn.SSLConnection, "unix": rconn.UnixDomainSocketConnection}
        self._connector = Connector(
            classes[self._opts.kind],
            self._opts,
            (rexc.RedisError, OSError, TimeoutError, EOFError),
            self.describe(),
            rexc.ResponseError,
        )
        self._receivers = Receivers(self.describe())
        self._pub = Publisher(self._opts.max_pending, self.describe())
        self._tasks: list[asyncio.Task[None]] = []
        self._kick: asyncio.Future[str] | None = None
        self._reconnects = 0
        self._heartbeat_misses = 0
        self._stalls = 0
        self._received = 0
        self._last_pong = 0.0
        self._ping_sent_at: float | None = None
        self._next_miss = 0.0
        self._interests = Interests(b"", self.describe())

    def describe(self) -> str:
        """Return the URL without its password."""
        return redact(self._url)

    def stats(self) -> dict[str, int]:
        """Return reconnects, publish errors, heartbeat misses and frame counts."""
        return {
            "reconnects": self._reconnects,
            "publish_errors": self._pub.errors,
            "delivery_unknown": self._pub.delivery_unknown,
            "heartbeat_misses": self._heartbeat_misses,
            "stalls": self._stalls,
            "frames_sent": self._pub.sent,
            "frames_received": self._received,
            "pending": self._pub.pending,
            "pattern_subscriptions": -1 if self._receivers.refused else self._receivers.patterns,
            "subscriber_checks": self._receivers.checks,
            "interest_subscriptions": len(self._interests.wanted),
        }

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Connect both connections, subscribe, and start delivering frames.

        :raises TransportError: if Redis cannot be reached or refuses us.
        """
        if self._tasks:
            raise TransportError(f"{self.describe()} is already started")
        self._sender = wire.check_node_id(node_id)
        prefix = wire.channel_prefix(namespace)
        self._inbox_prefix = prefix + b"n:"
        self._bcast = wire.broadcast_channel(prefix)
        self._inbox = wire.inbox_channel(prefix, node_id)
        self._hb = wire.heartbeat_channel(prefix, node_id)
        self._bcast_head = wire.publish_head(self._bcast)
        self._hb_head = wire.publish_head(self._hb) + b"$0\r\n"
        self._heads: dict[str, bytes] = {}
        self._on_frame = on_frame
        self._pub = Publisher(self._opts.max_pending, self.describe())
        self._interests = Interests(prefix, self.describe())
        self._interest_prefix = self._interests.prefix
        sub, pub = await self._open()
        self._pub.open()
        self._last_pong = asyncio.get_running_loop().time()
        self._kick = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._supervise(sub, pub), name="addrbus-redis-supervisor"),
            asyncio.create_task(self._heartbeat(), name="addrbus-redis-heartbeat"),
        ]
        logger.info("connected to %s as node %s", self.describe(), node_id)
        self._report("connected")

    async def stop(self) -> None:
        """Stop every task, fail pending sends and close both connections. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pub.close("stopped")
        # The supervisor closes its connections, unless it was cancelled before it ran.
        await self._connector.close(*self._connector.current)
        self._connector.current = ()
        if tasks:
            logger.info("disconnected from %s", self.describe())
        # Not through _set_state: the bus asked for this, it is no fault to report.
        self.state = "disconnected"

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Publish ``frame`` to the namespace and return how many other nodes got it.

        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises DeliveryUnknown: if no reply came before ``timeout``.
        :raises TransportError: if the frame could not be handed over.
        """
        size = len(frame)
        if size > self.max_frame_size:
            raise MessageTooLarge(size, self.max_frame_size, self.scheme)
        head = b"%s$%d\r\n%s" % (self._bcast_head, size + wire.SENDER_LEN, self._sender)
        probe = self._receivers.probe(self._pub, self._bcast) if self._receivers.checking else None
        count = await self._pub.publish(head, frame, self._opts.timeout if timeout is None else timeout)
        if probe is not None:
            count = self._receivers.subscribers(probe, count)
        # Our own subscriber is among the receivers whenever it is subscribed.
        return max(0, count - 1)

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Publish ``frame`` to ``node_id``'s inbox; return False if nobody reads it; raise as :meth:`broadcast`."""
        size = len(frame)
        if size > self.max_frame_size:
            raise MessageTooLarge(size, self.max_frame_size, self.scheme)
        head = self._heads.get(node_id)
        if head is None:
            if len(self._heads) > 4096:
                self._heads.clear()  # node ids come and go; keep the cache small
            head = self._heads[node_id] = wire.publish_head(self._inbox_prefix + node_id.encode())
        probe = None
        if self._receivers.checking:
            probe = self._receivers.probe(self._pub, self._inbox_prefix + node_id.encode())
        head = b"%s$%d\r\n" % (head, size)
        count = await self._pub.publish(head, frame, self._opts.timeout if timeout is None else timeout)
        if probe is not None and count > 0:
            count = self._receivers.subscribers(probe, count)  # 0 is sure; more may be patterns only
        return count > 0

    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Publish ``frame`` on the channel of interest key ``key``: return once it is queued (the count is unknown).

        It does not wait for Redis's reply: a loop of publishes is pipelined
        like a raw one (:meth:`.Publisher.post`).

        :raises MessageTooLarge: if the frame is larger than ``max_frame_size``.
        :raises TransportError: if the connection is down, or ``max_pending`` frames stay pending for ``timeout``.
        """
        size = len(frame)
        if size > self.max_frame_size:
            raise MessageTooLarge(size, self.max_frame_size, self.scheme)
        head = b"%s$%d\r\n%s" % (self._interests.head(key), size + wire.SENDER_LEN, self._sender)
        await self._pub.post(head, frame, self._opts.timeout if timeout is None else timeout)

    async def subscribe(self, keys: Collection[str]) -> None:
        """Subscribe to the channels of ``keys``; return once Redis confirmed them (see :mod:`.interest`).

        :raises TransportError: if Redis did not confirm in time; a reconnect subscribes them anyway.
        """
        await self._interests.subscribe(keys, self._opts.timeout)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Unsubscribe from the channels of ``keys`` (a new connection subscribes only what is wanted)."""
        await self._interests.unsubscribe(keys)

    async def _open(self) -> tuple[Connection, Connection]:
        """Open a subscribed connection pair, with every interest channel wanted when it is ready."""
        channels = (self._inbox, self._bcast, self._hb, *sorted(self._interests.wanted))
        sub, pub = await self._connector.open(channels)
        self._receivers.connected(self._connector.patterns)
        send = sender(sub)
        commands = self._interests.connected(send, channels)
        if commands:
            await send(commands)
        return sub, pub

    def _report(self, state: str) -> None:
        try:
            self._set_state(state)
        except Exception:
            logger.exception("state listener failed on %r", state)

    # -- tasks -----------------------------------------------------------------------

    async def _supervise(self, sub: Connection, pub: Connection) -> None:
        """Run one connection pair at a time; on any failure, rebuild it with backoff."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=0.05, cap=0.5)
        while True:
            tasks = [self._receive(sub), self._acknowledge(pub),
                     asyncio.create_task(self._pub.run_writer(sender(pub)), name="addrbus-redis-writer")]
            self._pub.direct = direct_writer(pub)
            try:
                assert self._kick is not None
                waits: list[asyncio.Future[Any]] = [*tasks, self._kick]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reason = self._failure(tasks)
                self._interests.disconnected()
                self._pub.close("stopped" if reason == "stopped" else "disconnected")
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._connector.close(sub, pub)
            self._report("disconnected")
            logger.warning("lost connection to %s (%s); reconnecting", self.describe(), reason)
            lost_at = loop.time()
            backoff.reset()
            while True:
                await asyncio.sleep(backoff.next_delay())
                try:
                    sub, pub = await self._open()
                    break
                except TransportError as exc:
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("reconnect attempt %d failed: %s", backoff.attempts, exc)
            self._reconnects += 1
            self._last_pong = loop.time()
            self._ping_sent_at = None
            # Open before telling anyone: a listener's first reaction is to publish.
            self._pub.open()
            logger.info("reconnected to %s after %.2f s", self.describe(), loop.time() - lost_at)
            self._report("reconnected")

    def _receive(self, sub: Connection) -> asyncio.Future[None]:
        """Deliver the subscriber's messages; return what ends when the connection does.

        Straight from the socket when redis-py's layout allows (one loop
        iteration less per frame), else through a task reading redis-py.
        """
        lost = attach(sub, self._on_message, self._not_enough)
        if lost is not None:
            return lost
        return asyncio.create_task(self._read_frames(sub), name="addrbus-redis-frames")

    def _acknowledge(self, pub: Connection) -> asyncio.Future[None]:
        """Match the publisher's replies to their frames; return what ends when the connection does."""
        lost = attach(pub, self._pub.on_reply, self._not_enough)
        if lost is not None:
            return lost
        reader = self._pub.run_reader(pub.read_response, self._reply_error)
        return asyncio.create_task(reader, name="addrbus-redis-acks")

    def _failure(self, tasks: list[asyncio.Future[None]]) -> str:
        kick = self._kick
        if kick is not None and kick.done():
            self._kick = asyncio.get_running_loop().create_future()
            return kick.result()
        for task in tasks:
            if task.done() and not task.cancelled():
                exc = task.exception()
                return "connection closed" if exc is None else self._connector.error_text(exc)
        return "stopped"

    async def _read_frames(self, sub: Connection) -> None:
        """Read the subscriber connection through redis-py, forever."""
        read = sub.read_response
        on_message = self._on_message
        while True:
            on_message(await read())

    def _on_message(self, msg: Any) -> None:
        """Deliver one message of the subscriber connection; heartbeats stay here."""
        if isinstance(msg, Exception):
            raise msg  # an error reply on a subscribed connection: rebuild it
        if msg[0] != _MESSAGE:
            if msg[0] == _SUBSCRIBED:
                self._interests.confirmed(msg[1])
            return
        channel = msg[1]
        try:
            if channel == self._inbox:
                self._received += 1
                self._on_frame(msg[2])
            elif channel.startswith(self._interest_prefix) or channel == self._bcast:
                data = msg[2]
                if data[: wire.SENDER_LEN] != self._sender:
                    self._received += 1
                    self._on_frame(data[wire.SENDER_LEN :])
            elif channel == self._hb:
                self._pong()
        except Exception:
            logger.exception("frame handler failed on a frame from %s", self.describe())

    def _pong(self) -> None:
        self._last_pong = asyncio.get_running_loop().time()
        self._ping_sent_at = None
        self._next_miss = 0.0
        if self.state == "degraded":
            logger.info("heartbeat from %s is back", self.describe())
            self._report("reconnected")

    async def _heartbeat(self) -> None:
        """Ping our own heartbeat channel; report degraded when a ping is overdue."""
        loop = asyncio.get_running_loop()
        interval = self._opts.heartbeat
        while True:
            # Half-interval ticks: a hung server is noticed 2 to 2.5 intervals
            # after its last answer, whatever the phase of the tick.
            await asyncio.sleep(interval / 2)
            if not self._pub.is_open:
                continue
            now = loop.time()
            silent = now - self._last_pong
            if self._ping_sent_at is None:
                if silent >= interval:
                    self._ping_sent_at = now
                    self._pub.ping(self._hb_head, b"")
                    self._receivers.ask(self._pub)
                continue
            # A ping answers in milliseconds; two intervals of silence with
            # one outstanding means the server or the link is stuck.
            if silent < 2 * interval:
                continue
            if now >= self._next_miss:
                self._heartbeat_misses += 1
                self._next_miss = now + interval
            if self.state != "degraded":
                logger.warning("%s has not answered for %.1f s: degraded", self.describe(), silent)
                self._report("degraded")
            stall = self._opts.stall_timeout
            if stall and silent >= stall and self._kick is not None and not self._kick.done():
                self._stalls += 1
                self._kick.set_result(f"no answer for {silent:.1f} s")
