"""Open, drive and close one MQTT 5 session through aiomqtt: the only module that imports aiomqtt and paho.

Both load lazily (:func:`load`), so ``import addrbus`` never needs them and a
missing package is a :class:`ConfigError` when an mqtt:// bus is built.

Received messages skip aiomqtt's queue: the client is given a queue class that
keeps nothing and hands each message's payload on as aiomqtt puts it in,
during paho's read, in order. aiomqtt's own path (one task and one
``asyncio.wait`` per message, through ``Client.messages``) cost more than the
bus's whole decode. ``Client.messages`` is still iterated, once, because it is
aiomqtt's public way to learn that the connection ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..._exceptions import ConfigError, DeliveryUnknown, TransportError
from .options import MqttOptions

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger("addrbus.transports.mqtt")

#: Topics per SUBSCRIBE or UNSUBSCRIBE packet.
BATCH = 500
#: Seconds a closing session waits for its DISCONNECT to be written before the socket is shut.
CLOSE_WAIT = 0.5


def load() -> tuple[ModuleType, Any]:
    """Return aiomqtt and paho's ``SubscribeOptions``.

    :raises ConfigError: if aiomqtt (or paho-mqtt under it) is not installed.
    """
    try:
        import aiomqtt
        from paho.mqtt.subscribeoptions import SubscribeOptions
    except ImportError as exc:
        raise ConfigError("the MQTT transport needs the aiomqtt package: pip install 'addrbus[mqtt]'") from exc
    return aiomqtt, SubscribeOptions


@functools.cache
def _client_class(lib: ModuleType) -> Any:
    """Return aiomqtt's ``Client`` with a write-readiness callback that checks its socket first."""

    class Client(lib.Client):  # type: ignore[name-defined,misc]
        # aiomqtt asks the loop to watch the socket for writing with
        # call_soon_threadsafe(add_writer, fd); when the connection breaks, paho can
        # close the socket before the loop runs that, which raises EBADF into the
        # loop (or, were the number reused, watches another socket). Here the loop
        # runs a check first: the socket must still be this client's and open.
        def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
            def write() -> None:
                try:
                    client.loop_write()
                except Exception as exc:  # a broken pipe: the connection is gone
                    if not self._disconnected.done():
                        self._disconnected.set_exception(exc)

            def watch() -> None:
                fd = sock.fileno()
                if fd >= 0 and client.socket() is sock:
                    self._loop.add_writer(fd, write)

            self._loop.call_soon_threadsafe(watch)

    return Client


def _handing_on(deliver: Callable[[bytes], None]) -> type[asyncio.Queue[Any]]:
    class HandOn(asyncio.Queue[Any]):
        """A message queue that keeps nothing: each message is delivered as aiomqtt puts it in."""

        def put_nowait(self, item: Any) -> None:
            deliver(item.payload)

    return HandOn


class Connector:
    """Open :class:`Session` s to the broker of one URL, translating every failure to :class:`TransportError`."""

    def __init__(self, options: MqttOptions, describe: str) -> None:
        self.lib, self._subscribe_options = load()
        self.options = options
        self.describe = describe

    def error_text(self, exc: BaseException) -> str:
        """Return ``exc`` as text, without the password even if a library put it there."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.options.password:
            text = text.replace(self.options.password, "***")
        return text

    async def open(self, client_id: str, deliver: Callable[[bytes], None]) -> Session:
        """Connect as ``client_id`` (a clean MQTT 5 session) and return it; frames go to ``deliver``.

        :raises TransportError: if the broker cannot be reached, refuses us, or
            does not answer within ``connect_timeout``.
        """
        lib, opts = self.lib, self.options
        tls = None
        if opts.tls:
            tls = lib.TLSParameters(ca_certs=opts.ca_certs, certfile=opts.certfile, keyfile=opts.keyfile)
        client = _client_class(lib)(
            opts.host, opts.port,
            username=opts.username, password=opts.password,
            identifier=client_id,
            queue_type=_handing_on(deliver),
            protocol=lib.ProtocolVersion.V5,
            timeout=opts.connect_timeout,
            keepalive=opts.keepalive,
            clean_start=True,
            tls_params=tls,
            tls_insecure=(not opts.check_hostname) if opts.tls else None,
        )  # fmt: skip
        # aiomqtt warns past 10 calls awaiting an answer; the transport has its own bound (max_pending).
        client.pending_calls_threshold = opts.max_pending + 16
        try:
            async with asyncio.timeout(opts.connect_timeout):
                await client.__aenter__()
        except TimeoutError:
            raise TransportError(f"cannot connect to {self.describe}: no answer in"
                                 f" {opts.connect_timeout} s (connect_timeout)") from None
        except lib.MqttError as exc:
            raise TransportError(f"cannot connect to {self.describe}: {self.error_text(exc)}") from None
        return Session(client, self)

    def subscription(self, no_local: bool) -> Any:
        """Return paho's options of one subscription at the URL's QoS."""
        return self._subscribe_options(qos=self.options.qos, noLocal=no_local)


class Session:
    """One connected MQTT client: its publishes, its subscriptions, and the future of its end."""

    def __init__(self, client: Any, connector: Connector) -> None:
        self._client = client
        self._connector = connector
        self._lib = connector.lib
        self._qos = connector.options.qos
        self.describe = connector.describe
        #: The topics this session has subscribed to.
        self.subscribed: set[str] = set()
        self.lost: asyncio.Task[str] = asyncio.create_task(self._watch(), name="addrbus-mqtt-watch")

    async def _watch(self) -> str:
        """Return, as text, why the connection ended (aiomqtt's message iterator raises then)."""
        try:
            async for _ in self._client.messages:  # nothing is ever queued (_handing_on)
                pass
        except self._lib.MqttError as exc:
            cause = exc.__cause__
            return self._connector.error_text(cause if cause is not None else exc)
        return "connection closed"

    async def publish(self, topic: str, frame: bytes, timeout: float) -> None:  # noqa: ASYNC109
        """Hand ``frame`` to the broker on ``topic``.

        :raises TransportError: if it was refused before leaving (the client is not connected).
        :raises DeliveryUnknown: if it was not written (QoS 0) or acknowledged (QoS 1) within ``timeout``.
        """
        try:
            await self._client.publish(topic, frame, qos=self._qos, timeout=timeout)
        except self._lib.MqttCodeError as exc:
            raise TransportError(f"{self.describe}: {self._connector.error_text(exc)}; frame not sent") from None
        except self._lib.MqttError:
            raise DeliveryUnknown(f"{self.describe} did not take the frame within {timeout} s;"
                                  " it may still be delivered") from None

    async def subscribe(self, topics: Collection[str], *, no_local: bool, timeout: float) -> None:  # noqa: ASYNC109
        """Subscribe to ``topics`` and return once the broker granted each (SUBACK).

        :raises TransportError: if the broker refused one (an ACL), or did not answer within ``timeout``.
        """
        wanted = [t for t in dict.fromkeys(topics) if t not in self.subscribed]
        options = self._connector.subscription(no_local)
        for i in range(0, len(wanted), BATCH):
            batch = wanted[i : i + BATCH]
            try:
                codes = await self._client.subscribe([(t, options) for t in batch], timeout=timeout)
            except self._lib.MqttError as exc:
                raise TransportError(f"could not subscribe at {self.describe}: {self._connector.error_text(exc)}"
                                     ) from None
            refused = [t for t, code in zip(batch, codes, strict=False) if getattr(code, "is_failure", False)]
            granted = [t for t in batch if t not in refused]
            self.subscribed.update(granted)
            if refused:
                raise TransportError(f"{self.describe} refused {len(refused)} subscription(s), first {refused[0]!r}:"
                                     f" {codes[batch.index(refused[0])]}")

    async def unsubscribe(self, topics: Collection[str], timeout: float) -> None:  # noqa: ASYNC109
        """Unsubscribe from ``topics``; never raises (a new session subscribes only what is wanted)."""
        held = [t for t in topics if t in self.subscribed]
        self.subscribed.difference_update(held)
        for i in range(0, len(held), BATCH):
            with contextlib.suppress(self._lib.MqttError):
                await self._client.unsubscribe(held[i : i + BATCH], timeout=timeout)

    async def close(self) -> None:
        """Disconnect at once, whatever state the broker is in. Idempotent."""
        if not self.lost.done():
            try:
                async with asyncio.timeout(CLOSE_WAIT):
                    await self._client.__aexit__(None, None, None)
            except (TimeoutError, self._lib.MqttError):
                self._shut()
        self._shut()
        # The watcher ends as paho reports the closed socket; bounded, in case it never does.
        await asyncio.wait([self.lost], timeout=CLOSE_WAIT)
        if not self.lost.done():
            self.lost.cancel()
            await asyncio.gather(self.lost, return_exceptions=True)

    def _shut(self) -> None:
        # A DISCONNECT that cannot be written (a hung broker with full buffers)
        # would hold the socket open: shut it, so paho reads EOF and cleans up.
        paho = getattr(self._client, "_client", None)
        sock = paho.socket() if paho is not None else None
        if isinstance(sock, socket.socket) and sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
