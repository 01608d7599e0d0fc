"""Carry frames over NATS: a subject per namespace, node inbox and interest key, routed by the server.

The only module of addrbus that imports :mod:`nats`; it does so lazily, so a
missing package is a :class:`ConfigError` at ``from_url`` time, not at import.
Subject names are in :mod:`.subjects`, URL arguments in :mod:`.options`, and
the operating side in ``docs/transports/nats.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..._exceptions import ConfigError, MessageTooLarge, TransportError
from ..base import FrameHandler, Transport
from . import subjects
from .options import NatsOptions, parse_nats_url, redact

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger("addrbus.transports.nats")

DEFAULT_MAX_FRAME = 2**20  # NATS's default max_payload
MAX_SUBJECTS = 4096  # subjects kept ready
_COUNTERS = ("reconnects", "frames_sent", "frames_received", "publish_errors", "no_responders")


def _load_nats() -> ModuleType:
    try:
        import nats
    except ImportError as exc:
        raise ConfigError("the NATS transport needs the nats-py package: pip install 'addrbus[nats]'") from exc
    return nats


def from_url(url: str) -> NatsTransport:
    """Build a :class:`NatsTransport` from a nats:// or tls:// URL.

    :raises ConfigError: for a bad URL or argument, or when nats-py is missing.
    """
    return NatsTransport(url)


class _Refused(Exception):
    """The server refused our credentials while we connected."""


def _refusal(exc: BaseException) -> bool:
    """Tell whether nats-py's error says the server refused our credentials (it retries those forever)."""
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text


async def _connect_within(connecting: Any, refused: asyncio.Future[str], timeout: float) -> Any:  # noqa: ASYNC109
    """Return nats-py's connection once made, within ``timeout`` s, unless the server refused us first.

    Cancelling alone is not a deadline here: nats-py retries a refused or
    silent server forever (``max_reconnect_attempts=-1``, which later
    reconnects need), and on Python 3.11 its inner ``wait_for`` can swallow a
    cancellation that lands as it completes. So the attempt runs as a task
    that is cancelled until it has ended.

    :raises TimeoutError: if no server took us within ``timeout``.
    :raises _Refused: if the server refused our credentials.
    """
    task = asyncio.ensure_future(connecting)
    try:
        await asyncio.wait([task, refused], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for _ in range(100):  # bounded: each round waits 50 ms at most
            if task.done():
                break
            task.cancel()
            await asyncio.wait([task], timeout=0.05)
    if task.done() and not task.cancelled():
        if task.exception() is None and not refused.done():
            return task.result()
        if task.exception() is None:
            await task.result().close()  # made just as the refusal came: not ours to keep
    if refused.done():
        raise _Refused(refused.result())
    if task.done() and not task.cancelled():
        raise task.exception()
    raise TimeoutError


async def _confirmed(nc: Any, timeout: float) -> None:  # noqa: ASYNC109
    """Return once the server has every command written so far (subscriptions above all).

    ``nc.flush()`` alone does not say so: nats-py writes its PING straight to the
    socket while SUB commands wait in its buffer for the flusher task, so under
    load the PONG can come back before the server saw the SUB. The buffer is
    written out first (nats-py's own forced flush), then the PING goes.
    """
    flush_pending = getattr(nc, "_flush_pending", None)
    if flush_pending is not None:
        await asyncio.wait_for(flush_pending(force_flush=True), timeout)
    await nc.flush(timeout)


class NatsTransport(Transport):
    """Move frames between the nodes of a namespace through a NATS server or cluster.

    States: ``connected`` once after start; ``disconnected`` when the
    connection to the server is lost (sends then fail fast); ``reconnected``
    once nats-py is connected again, to the same server or another of the
    cluster, with every subscription restored.
    """

    scheme = "nats"
    needs_heartbeat = True
    routes_by_interest = True
    routes_sends = True  # a queue group per address: NATS picks the consumer of a send or request
    max_frame_size = DEFAULT_MAX_FRAME

    def __init__(self, url: str) -> None:
        super().__init__()
        self._nats = _load_nats()
        # .subjects builds only valid subjects: nats-py need not check each one (from nats-py 2.16 on).
        self._fast = {"skip_subject_validation": True} if "skip_subject_validation" in inspect.signature(
            self._nats.aio.client.Client.connect).parameters else {}
        self._url = url
        self._opts: NatsOptions = parse_nats_url(url)
        self.scheme = url.partition("://")[0].lower()
        self._nc: Any = None
        self._on_frame: FrameHandler | None = None
        self._subs: dict[str, tuple[Any, Any]] = {}  # interest key -> (its publish, its queue) subscription
        self._queues: dict[str, str] = {}  # interest key -> its queue subject, built once
        self._undeliverable: Callable[[str], None] | None = None
        self._refused: asyncio.Future[str] | None = None  # while start() connects
        self._inboxes: dict[str, str] = {}  # node id -> its inbox subject, built once
        self._subjects: dict[str, str] = {}  # interest key -> its subject, built once
        self._counts = dict.fromkeys(_COUNTERS, 0)

    def __repr__(self) -> str:
        return f"<NatsTransport {self.describe()}>"

    def describe(self) -> str:
        """Return the URL without its password or token."""
        return redact(self._url)

    def stats(self) -> dict[str, int]:
        """Return reconnects, frame counts, publish errors and interest subscriptions."""
        return {**self._counts, "interest_subscriptions": len(self._subs)}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Connect, subscribe to the namespace and to this node's inbox, and deliver frames.

        :raises TransportError: if no server of the URL can be reached, or it refuses us.
        """
        if self._nc is not None:
            raise TransportError(f"{self.describe()} is already started")
        prefix = self._prefix = subjects.prefix(namespace)
        self._bcast = subjects.broadcast(prefix)
        self._on_frame = on_frame
        opts = self._opts
        try:
            self._refused = asyncio.get_running_loop().create_future()
            nc = await _connect_within(self._nats.connect(
                **opts.connect_kwargs(), tls=self._tls(), no_echo=True, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.1, connect_timeout=opts.connect_timeout,
                pending_size=0, error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected, closed_cb=self._on_closed, **self._fast,
            ), self._refused, opts.connect_timeout)
            self._nc = nc
            if nc.max_payload < self.max_frame_size:
                self.max_frame_size = nc.max_payload
            await nc.subscribe(self._bcast, cb=self._on_msg)
            await nc.subscribe(subjects.inbox(prefix, node_id), cb=self._on_msg)
            self._replies = subjects.no_responders(prefix, node_id)
            await nc.subscribe(self._replies + ".*", cb=self._on_status)
            await _confirmed(nc, opts.timeout)
        except Exception as exc:
            await self._close()
            if isinstance(exc, TransportError):
                raise
            if isinstance(exc, _Refused):
                raise TransportError(f"cannot connect to {self.describe()}: the server refused the credentials"
                                     f" ({exc})") from None
            if isinstance(exc, TimeoutError):
                raise TransportError(f"cannot connect to {self.describe()}: no server answered within"
                                     f" {opts.connect_timeout} s (connect_timeout)") from None
            raise TransportError(f"cannot connect to {self.describe()}: {self._text(exc)}") from None
        finally:
            self._refused = None
        logger.info("connected to %s as node %s", self.describe(), node_id)
        self._set_state("connected")

    def _tls(self) -> ssl.SSLContext | None:
        opts = self._opts
        if not opts.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=opts.ca_certs)
            if opts.certfile is not None:
                context.load_cert_chain(opts.certfile, opts.keyfile)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f"{name}={path}" for name, path in (("ca_certs", opts.ca_certs),
                              ("certfile", opts.certfile), ("keyfile", opts.keyfile)) if path)
            raise TransportError(f"cannot load the TLS files of {self.describe()} ({files}): {exc}") from None
        return context

    async def stop(self) -> None:
        """Close the connection at once (nothing pending is flushed). Idempotent."""
        if self._nc is None:
            return
        await self._close()
        logger.info("disconnected from %s", self.describe())
        self.state = "disconnected"  # asked for: not reported as a fault

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        self._subs.clear()
        self._subjects.clear()
        self._inboxes.clear()
        self._queues.clear()
        self._on_frame = None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 2.0)
            except Exception:
                logger.debug("closing the connection failed", exc_info=True)

    # -- sending --------------------------------------------------------------------------------

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Publish ``frame`` to every other node of the namespace; return None (NATS does not count).

        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises TransportError: if the transport is stopped or disconnected.
        """
        await self._publish(self._bcast, frame)
        return None

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Publish ``frame`` to ``node_id``'s inbox; True (NATS does not say whether anyone read it)."""
        subject = self._inboxes.get(node_id)
        if subject is None:
            subject = self._remember(self._inboxes, node_id, subjects.inbox(self._prefix, node_id))
        await self._publish(subject, frame)
        return True

    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Publish ``frame`` on the subject of interest key ``key``: NATS hands it to its subscribers only."""
        subject = self._subjects.get(key)
        if subject is None:
            subject = self._remember(self._subjects, key, subjects.interest(self._prefix, key))
        await self._publish(subject, frame)
        return None

    async def send_any(self, key: str, frame: Any, *, reply: str | None = None,
                       timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Publish ``frame`` to the queue group of ``key``: NATS hands it to one member.

        With ``reply``, the message names ``<prefix>.r.<node>.<reply>`` as its
        reply subject, where NATS answers 503 when the group has no member.
        """
        subject = self._queues.get(key)
        if subject is None:
            subject = self._remember(self._queues, key, subjects.queue(self._prefix, key))
        await self._publish(subject, frame, f"{self._replies}.{subjects.token(reply)}" if reply else "")

    def on_undeliverable(self, listener: Callable[[str], None] | None) -> None:
        """Register the callback told the ``reply`` token of a request no node took."""
        self._undeliverable = listener

    @staticmethod
    def _remember(cache: dict[str, str], name: str, subject: str) -> str:
        if len(cache) >= MAX_SUBJECTS:
            cache.clear()  # keys and nodes come and go; rebuilding a subject costs a microsecond
        cache[name] = subject
        return subject

    async def _publish(self, subject: str, frame: Any, reply: str = "") -> None:
        size = len(frame)
        if size > self.max_frame_size:
            raise MessageTooLarge(size, self.max_frame_size, self.scheme)
        nc = self._nc
        if nc is None:
            raise TransportError(f"{self.describe()} is not started")
        if not nc.is_connected:
            raise TransportError(f"{self.describe()} is disconnected")
        try:
            await nc.publish(subject, bytes(frame) if not isinstance(frame, bytes) else frame, reply)
        except Exception as exc:
            self._counts["publish_errors"] += 1
            raise TransportError(f"publish to {self.describe()} failed: {self._text(exc)}") from None
        self._counts["frames_sent"] += 1

    # -- interest -------------------------------------------------------------------------------

    async def subscribe(self, keys: Collection[str]) -> None:
        """Subscribe to the subjects of ``keys``; return once the server has them.

        nats-py restores them after a reconnect, before ``reconnected``.

        :raises TransportError: if the server did not confirm within the URL's ``timeout``.
        """
        nc = self._nc
        if nc is None:
            raise TransportError(f"{self.describe()} is not started")
        new = [key for key in dict.fromkeys(keys) if key not in self._subs]
        if not new:
            return
        try:
            for key in new:
                tok = subjects.token(key)
                published = await nc.subscribe(subjects.interest(self._prefix, key), cb=self._on_msg)
                sent = await nc.subscribe(subjects.queue(self._prefix, key), queue=tok, cb=self._on_msg)
                self._subs[key] = (published, sent)
            await _confirmed(nc, self._opts.timeout)
        except Exception as exc:
            raise TransportError(f"could not subscribe at {self.describe()}: {self._text(exc)}") from None

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Unsubscribe from the subjects of ``keys``; never raises."""
        for key in keys:
            for sub in self._subs.pop(key, ()):
                try:
                    await sub.unsubscribe()
                except Exception:
                    logger.debug("unsubscribe from %r failed", key, exc_info=True)

    # -- receiving and events -------------------------------------------------------------------

    async def _on_msg(self, msg: Any) -> None:
        on_frame = self._on_frame
        if on_frame is None:
            return
        self._counts["frames_received"] += 1
        try:
            on_frame(msg.data)
        except Exception:
            logger.exception("frame handler failed on a frame from %s", self.describe())

    async def _on_status(self, msg: Any) -> None:
        """A message on our reply subjects: NATS's no-responders status for a request nobody took."""
        headers = msg.headers
        listener = self._undeliverable
        if headers and headers.get("Status") == "503" and listener is not None:
            self._counts["no_responders"] += 1
            try:
                listener(msg.subject.rpartition(".")[2])
            except Exception:
                logger.exception("the undeliverable listener failed")

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("nats-py reports: %s", self._text(exc))
        refused = self._refused
        if refused is not None and not refused.done() and _refusal(exc):
            refused.set_result(self._text(exc))  # while start() waits: fail it now, not at connect_timeout

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            logger.warning("lost connection to %s; reconnecting", self.describe())
            self._set_state("disconnected")

    async def _on_reconnected(self) -> None:
        nc = self._nc
        if nc is not None:
            self._counts["reconnects"] += 1
            logger.info("reconnected to %s (server %s)", self.describe(), redact(str(nc.connected_url.geturl())))
            self._set_state("reconnected")

    async def _on_closed(self) -> None:
        logger.debug("connection to %s closed", self.describe())

    def _text(self, exc: BaseException) -> str:
        """Return ``exc`` as text, without the password or token even if a library put them there."""
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
        for secret in (self._opts.password, self._opts.token):
            if secret:
                text = text.replace(secret, "***")
        return text
