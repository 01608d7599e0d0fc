"""The redis transport's direct socket reader (``redis.feed``) and the publisher's reply matching."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import hiredis
import pytest

from addrbus._exceptions import TransportError
from addrbus.transports.redis import RedisTransport, from_url
from addrbus.transports.redis.feed import attach
from addrbus.transports.redis.publish import Publisher
from tests.fixtures_redis import RedisServer

NOT_ENOUGH = object()
WAIT = 5.0


def message(channel: bytes, data: bytes) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(channel), channel, len(data), data)


async def connection() -> tuple[Any, socket.socket]:
    """Return a redis-py-shaped connection over one end of a socket pair, and the other end."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    parser = SimpleNamespace(_reader=hiredis.Reader(notEnoughData=NOT_ENOUGH))
    return SimpleNamespace(_reader=reader, _writer=writer, _parser=parser), theirs


async def test_replies_already_read_are_handed_over_first_and_in_order() -> None:
    conn, peer = await connection()
    got: list[Any] = []
    three = asyncio.Event()

    def take(reply: Any) -> None:
        got.append(reply)
        if len(got) == 3:
            three.set()

    try:
        # redis-py had parsed part of a reply, and read more bytes it never looked at.
        first = message(b"c", b"one")
        conn._parser._reader.feed(first[:10])
        conn._reader.feed_data(first[10:] + message(b"c", b"two")[:5])
        lost = attach(conn, take, NOT_ENOUGH)
        assert lost is not None
        assert got == [[b"message", b"c", b"one"]]
        peer.sendall(message(b"c", b"two")[5:] + message(b"c", b"three"))
        await asyncio.wait_for(three.wait(), WAIT)
        assert [reply[2] for reply in got] == [b"one", b"two", b"three"]
        peer.close()
        assert await asyncio.wait_for(lost, WAIT) is None  # the server closed: the end, no error
    finally:
        peer.close()
        conn._writer.close()


async def test_a_reply_that_breaks_the_callback_ends_the_connection() -> None:
    conn, peer = await connection()
    try:
        def refuse(reply: Any) -> None:
            raise TransportError("a reply nobody asked for")

        lost = attach(conn, refuse, NOT_ENOUGH)
        assert lost is not None
        peer.sendall(b":1\r\n")
        with pytest.raises(TransportError):
            await asyncio.wait_for(lost, WAIT)
        assert conn._writer.transport.is_closing()
    finally:
        peer.close()
        conn._writer.close()


async def test_other_layouts_are_left_alone() -> None:
    conn, peer = await connection()
    try:
        assert attach(object(), print, NOT_ENOUGH) is None
        assert attach(conn, print, None) is None  # redis-py's sentinel unknown
        conn._parser = SimpleNamespace(_reader=object())  # not hiredis: redis-py's own parser
        assert attach(conn, print, NOT_ENOUGH) is None
        assert conn._writer.transport.get_protocol() is not None
    finally:
        peer.close()
        conn._writer.close()


async def test_publisher_matches_replies_in_order_and_refusals_to_their_frame() -> None:
    pub = Publisher(8, "test")
    pub.open()
    sent: list[list[bytes]] = []
    written = asyncio.Event()

    async def send(chunks: list[bytes]) -> None:
        sent.append(chunks)
        written.set()

    writer = asyncio.create_task(pub.run_writer(send))
    try:
        calls = [asyncio.create_task(pub.publish(b"head", b"%d" % n, WAIT)) for n in range(3)]
        await asyncio.wait_for(written.wait(), WAIT)
        assert len(sent) == 1 and len(sent[0]) == 9  # one batch: three PUBLISH-es of three chunks
        pub.on_reply(2)
        pub.on_reply(Exception("NOPERM"))
        pub.on_reply(0)
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert results[0] == 2 and results[2] == 0
        assert isinstance(results[1], TransportError) and "NOPERM" in str(results[1])
        with pytest.raises(TransportError, match="nobody asked for"):
            pub.on_reply(1)
    finally:
        writer.cancel()
        pub.close("stopped")


async def test_the_transport_reads_both_connections_without_a_reader_task(redis_server: RedisServer) -> None:
    transport = from_url(redis_server.url)
    assert isinstance(transport, RedisTransport)
    await transport.start("0123456789abcdef", "feed-test", lambda frame: None)
    try:
        assert await transport.broadcast(b"hello") == 0  # a round trip: the connections are being read
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "addrbus-redis-writer" in names
        assert not names & {"addrbus-redis-frames", "addrbus-redis-acks"}, names
    finally:
        await transport.stop()
