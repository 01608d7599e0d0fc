"""Open and close the two connections of a redis transport: a subscriber and a publisher.

redis-py's classes and exception types are handed in by ``transport.py``, the one
module that imports :mod:`redis`; this module only drives them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..._exceptions import TransportError
from . import wire
from .counts import NUMPAT
from .options import RedisOptions

_SUBSCRIBED = b"subscribe"


class Connection(Protocol):
    """The part of redis-py's asyncio ``Connection`` the transport uses."""

    is_connected: bool

    def connect(self) -> Awaitable[None]: ...
    def send_packed_command(self, command: list[bytes], check_health: bool = ...) -> Awaitable[None]: ...
    def read_response(self) -> Awaitable[Any]: ...
    def disconnect(self, nowait: bool = ...) -> Awaitable[None]: ...


class Connector:
    """Make subscribed connection pairs, translating every failure to :class:`TransportError`."""

    def __init__(
        self,
        make: Callable[..., Connection],
        options: RedisOptions,
        net_errors: tuple[type[BaseException], ...],
        describe: str,
        refused: type[Exception],
    ) -> None:
        self._make = make
        self._opts = options
        self._net_errors = net_errors
        self._describe = describe
        self._refused = refused
        self.current: tuple[Connection, ...] = ()
        #: ``PUBSUB NUMPAT`` when the last pair was opened: how many patterns clients
        #: subscribe to (None if the server refused to say, an ACL or a proxy).
        self.patterns: int | None = None

    def _new(self) -> Connection:
        # No redis-py retries (they hid a 12 s stall and published twice), no
        # socket timeout (each call has its own bound), RESP2 (pub/sub
        # messages as plain replies, not RESP3 pushes).
        return self._make(
            **self._opts.connect_kwargs,
            socket_timeout=None,
            socket_connect_timeout=self._opts.connect_timeout,
            retry=None,
            protocol=2,
        )

    def error_text(self, exc: BaseException) -> str:
        """Return ``exc`` as text, without the password even if a library put it there."""
        text = f"{type(exc).__name__}: {exc}"
        if self._opts.password:
            text = text.replace(self._opts.password, "***")
        return text

    async def open(self, channels: tuple[bytes, ...]) -> tuple[Connection, Connection]:
        """Return a subscriber connection subscribed to ``channels`` and a publisher connection.

        :raises TransportError: if either fails within ``connect_timeout``.
        """
        sub, pub = self._new(), self._new()
        self.current = (sub, pub)
        try:
            async with asyncio.timeout(self._opts.connect_timeout):
                await sub.connect()
                await sub.send_packed_command([wire.command(b"SUBSCRIBE", *channels)], False)
                for _ in channels:
                    reply = await sub.read_response()
                    if reply[0] != _SUBSCRIBED:
                        raise TransportError(f"unexpected reply to SUBSCRIBE: {reply[0]!r}")
                await pub.connect()
                self.patterns = await self._count_patterns(pub)
        except BaseException as exc:
            await self.close(sub, pub)
            if isinstance(exc, TransportError):
                raise
            if isinstance(exc, TimeoutError) and not str(exc):
                text = f"no answer in {self._opts.connect_timeout} s (connect_timeout)"
                raise TransportError(f"cannot connect to {self._describe}: {text}") from exc
            if isinstance(exc, self._net_errors):
                raise TransportError(f"cannot connect to {self._describe}: {self.error_text(exc)}") from exc
            raise
        return sub, pub

    async def _count_patterns(self, pub: Connection) -> int | None:
        await pub.send_packed_command([NUMPAT], False)
        try:
            reply = await pub.read_response()
        except self._refused:
            return None
        return reply if isinstance(reply, int) else None

    @staticmethod
    async def close(*conns: Connection) -> None:
        """Close ``conns`` at once, whatever state the server is in."""
        for conn in conns:
            # Abort rather than close: a close waits to flush the write buffer,
            # which never happens while the server hangs, and what is still
            # buffered was already reported as not sent or unknown.
            writer = getattr(conn, "_writer", None)
            if writer is not None:
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)


def sender(pub: Connection) -> Callable[[list[bytes]], Awaitable[None]]:
    """Return the publisher's write function: one packed batch per call, never reconnecting."""

    async def send(chunks: list[bytes]) -> None:
        # redis-py reconnects on its own when a send finds the connection
        # closed; we must not, or frames would leave outside our bookkeeping.
        if not pub.is_connected:
            raise TransportError("the publisher connection is closed")
        await pub.send_packed_command(chunks, False)

    return send


def direct_writer(pub: Connection) -> Callable[[bytes], None] | None:
    """Return a synchronous write to ``pub``'s socket, or None if redis-py hides it.

    redis-py only offers an async send; writing straight to its stream lets an
    idle transport publish without a hop through the writer task. Without the
    private stream (another redis-py layout) the writer task does all writes.
    """
    writer = getattr(pub, "_writer", None)
    write = getattr(writer, "write", None)
    return write if callable(write) else None
