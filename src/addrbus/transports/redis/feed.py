"""Read a redis-py connection straight off its socket: each reply handed over as soon as it is parsed.

redis-py reads through an asyncio ``StreamReader``: every reply costs a
wake-up of the reading task (one more loop iteration) and a climb through
three coroutines. Once a connection only receives (pub/sub messages, or the
replies to pipelined ``PUBLISH``-es), the transport swaps in :class:`Feed` as
the socket's protocol: received bytes go straight into redis-py's own hiredis
reader, and every complete reply goes to a callback, in order, in the same
loop iteration. Flow control of writes and the end of the connection are
passed on to the ``StreamReaderProtocol`` it replaces, so redis-py's writer
keeps working on that connection.

This leans on redis-py's private layout (``_reader``, ``_writer``,
``_parser._reader``) and on the hiredis parser; :func:`attach` returns None
when either is missing, and the transport then reads the slow way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Feed(asyncio.Protocol):
    """Feed a hiredis reader from the socket and hand each complete reply to ``on_reply``."""

    def __init__(
        self,
        inner: Any,
        reader: Any,
        not_enough: object,
        on_reply: Callable[[Any], None],
        lost: asyncio.Future[None],
        transport: asyncio.Transport,
    ) -> None:
        self._inner = inner  # the StreamReaderProtocol redis-py's writer still relies on
        self._reader = reader
        self._not_enough = not_enough
        self._on_reply = on_reply
        self._lost = lost
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self.drain()

    def drain(self) -> None:
        """Hand over every reply already complete in the reader."""
        gets, not_enough, on_reply = self._reader.gets, self._not_enough, self._on_reply
        try:
            reply = gets()
            while reply is not not_enough:
                on_reply(reply)
                reply = gets()
        except Exception as exc:  # a protocol error, or a reply that means we are out of step
            if not self._lost.done():
                self._lost.set_exception(exc)
            self._transport.abort()

    def eof_received(self) -> bool:
        # The server closed the connection: close our side too (returning False).
        self._inner.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        if not self._lost.done():
            if exc is None:
                self._lost.set_result(None)
            else:
                self._lost.set_exception(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def attach(conn: Any, on_reply: Callable[[Any], None], not_enough: object | None) -> asyncio.Future[None] | None:
    """Route every reply ``conn`` receives from now on to ``on_reply``, synchronously and in order.

    Bytes that redis-py has read but not handed out yet are replayed first.
    Returns a future that ends when the connection does (with an exception
    if it broke or ``on_reply`` raised), or None if ``conn`` is not laid out
    as expected (then nothing was changed).
    """
    writer: Any = getattr(conn, "_writer", None)
    stream: Any = getattr(conn, "_reader", None)
    reader: Any = getattr(getattr(conn, "_parser", None), "_reader", None)
    transport = getattr(writer, "transport", None)
    buffered = getattr(stream, "_buffer", None)
    if (
        not_enough is None
        or type(reader).__module__ != "hiredis"
        or not isinstance(transport, asyncio.Transport)
        or not isinstance(buffered, bytearray)
        or transport.is_closing()
        or getattr(stream, "_eof", True)  # the server already closed: let redis-py report it
        or stream.exception() is not None
    ):
        return None
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    feed = Feed(transport.get_protocol(), reader, not_enough, on_reply, lost, transport)
    leftover = bytes(buffered)
    buffered.clear()
    transport.set_protocol(feed)
    if leftover:
        reader.feed(leftover)
    feed.drain()
    # The StreamReader may have paused the socket while its buffer was full.
    transport.resume_reading()
    return lost
