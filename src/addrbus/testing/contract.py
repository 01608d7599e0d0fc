"""The transport contract: what every transport must do for the bus, as users see it.

A transport's test module subclasses :class:`BusContract` and provides
``url()``; every case then runs on that transport with two or three nodes
(buses) sharing it, as separate services would::

    # test_my_transport.py
    from addrbus.testing.contract import BusContract


    class TestMyTransport(BusContract):
        def url(self) -> str:
            return "mine://localhost:4000"

Run it with plain ``pytest``. The class brings every fixture it uses
(``anyio_backend``, ``address``, ``make_bus``, ``nodes``) and marks its tests
for anyio's pytest plugin, which is installed with addrbus, on asyncio; it
needs nothing from your ``conftest.py``. Start a server in an autouse fixture
of the subclass and build ``url()`` from it; raise ``settle`` for a transport
whose nodes take longer to learn each other's registrations.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from .._bus import EventBus
from .._exceptions import NoHandlers, RecipientFailure, RecipientGone, RequestTimeout
from .._message import Message
from ._addressing import WAIT, AddressingCases, Nodes

__all__ = ["BusContract"]

_names = itertools.count()


def _unique(prefix: str) -> str:
    # Unique across the processes of one run (pytest-xdist) as well as within one.
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class Order(BaseModel):
    id: uuid.UUID
    placed: datetime
    items: list[str]
    note: str | None = None


class Receipt(BaseModel):
    order: uuid.UUID
    total: int


class BusContract(AddressingCases):
    """Cases that every transport must pass; subclass it and provide ``url()``."""

    pytestmark = pytest.mark.anyio

    #: Seconds a node needs to learn another's new registration.
    settle = 2.0

    def url(self) -> str:
        """Return the URL of the transport under test; each call may name a fresh hub or group."""
        raise NotImplementedError("a BusContract subclass must define url()")

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run on asyncio, the loop addrbus runs on."""
        return "asyncio"

    @pytest.fixture
    def address(self) -> str:
        """Return an address no other test uses."""
        return _unique("addr")

    @pytest.fixture
    async def make_bus(self) -> AsyncIterator[Callable[..., EventBus]]:
        """Build buses as users do; stop every one at teardown."""
        buses: list[EventBus] = []

        def make(url: str | None = None, **options: Any) -> EventBus:
            bus = EventBus(url, **options)
            buses.append(bus)
            return bus

        yield make
        for bus in buses:
            await bus.stop()

    @pytest.fixture
    def nodes(self, make_bus: Callable[..., EventBus]) -> Nodes:
        """Return ``await nodes(count, **options)``: that many unstarted buses on ``url()``, in one namespace."""
        namespace = _unique("ns")
        url = self.url()

        async def start(count: int = 2, **options: Any) -> list[EventBus]:
            return [make_bus(url, namespace=namespace, **options) for _ in range(count)]

        return start

    async def started(self, *buses: EventBus) -> None:
        for bus in buses:
            await bus.start()

    async def until_routed(self, bus: EventBus, address: str, handlers: int) -> None:
        """Wait until ``bus`` knows ``handlers`` handlers for ``address``."""
        await bus.wait_for_handlers(address, handlers, timeout=self.settle + WAIT)

    # -- request/reply -----------------------------------------------------------

    async def test_request_reply_between_nodes(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()

        @server.on(address)
        async def double(x: int) -> int:
            return x * 2

        await self.started(server, client)
        assert await client.request(address, 21, timeout=WAIT) == 42

    async def test_typed_bodies_round_trip(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        seen: list[Order] = []

        @server.consumer(address)
        async def place(msg: Message[Order]) -> Receipt:
            seen.append(msg.body)
            return Receipt(order=msg.body.id, total=len(msg.body.items))

        await self.started(server, client)
        order = Order(id=uuid.uuid4(), placed=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), items=["a", "b"])
        receipt = await client.request(address, order, response_type=Receipt, timeout=WAIT)
        assert receipt == Receipt(order=order.id, total=2)
        assert seen == [order]
        assert isinstance(seen[0].placed, datetime) and seen[0].placed == order.placed

    async def test_request_message_carries_ids_and_headers(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        received: list[Message[Any]] = []

        @server.consumer(address)
        async def echo(msg: Message[str]) -> str:
            received.append(msg)
            return msg.headers.get("trace", "")

        await self.started(server, client)
        reply = await client.request_message(address, "hi", headers={"trace": "abc"}, timeout=WAIT)
        assert reply.body == "abc"
        (msg,) = received
        assert msg.headers == {"trace": "abc"}
        assert msg.is_request and msg.correlation_id and msg.reply_to == client.node_id
        assert msg.sender == client.node_id
        assert reply.correlation_id == msg.correlation_id
        assert reply.sender == server.node_id

    async def test_explicit_reply_and_fail(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()

        @server.consumer(address)
        async def handle(msg: Message[str]) -> None:
            if msg.body == "bad":
                await msg.fail(409, "conflict")
            else:
                await msg.reply(msg.body.upper(), headers={"served-by": "handle"})

        await self.started(server, client)
        reply = await client.request_message(address, "ok", timeout=WAIT)
        assert reply.body == "OK" and reply.headers == {"served-by": "handle"}
        with pytest.raises(RecipientFailure) as info:
            await client.request(address, "bad", timeout=WAIT)
        assert info.value.code == 409 and info.value.message == "conflict"

    async def test_handler_exception_is_recipient_failure_not_timeout(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()

        @server.on(address)
        async def boom(body: Any) -> None:
            raise KeyError("missing thing")

        await self.started(server, client)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RecipientFailure) as info:
            await client.request(address, None, timeout=WAIT)
        assert loop.time() - t0 < WAIT / 2
        assert info.value.remote_type == "KeyError"
        assert "missing thing" in info.value.message

    async def test_invalid_body_names_fields_not_values(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        calls: list[Order] = []

        @server.on(address)
        async def place(order: Order) -> None:
            calls.append(order)

        await self.started(server, client)
        with pytest.raises(RecipientFailure) as info:
            await client.request(address, {"id": "SECRET-NOT-A-UUID", "items": "x"}, timeout=WAIT)
        text = str(info.value)
        assert "id" in text and "placed" in text and "items" in text
        assert "SECRET-NOT-A-UUID" not in text
        assert calls == []

    async def test_no_handlers_is_immediate(self, nodes: Nodes, address: str) -> None:
        (client,) = await nodes(1)
        await self.started(client)
        with pytest.raises(NoHandlers):
            await client.request(address, 1, timeout=WAIT)
        with pytest.raises(NoHandlers):
            await client.send(address, 1)

    async def test_timeout(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        release = asyncio.Event()

        @server.on(address)
        async def slow(body: Any) -> None:
            await release.wait()

        await self.started(server, client)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RequestTimeout) as info:
            await client.request(address, None, timeout=0.3)
        elapsed = loop.time() - t0
        assert 0.3 <= elapsed < 0.3 + 1.0
        assert isinstance(info.value, TimeoutError)
        release.set()
        assert client.stats()["pending_requests"] == 0

    # -- send and publish --------------------------------------------------------

    async def test_send_round_robin_across_nodes(self, nodes: Nodes, address: str) -> None:
        """Round-robin across nodes; where the engine picks the node (``routes_sends``), a fair share each."""
        a, b, client = await nodes(3)
        engine = client.transport_routes_sends
        total = 200 if engine else 10
        got: dict[str, int] = {"a": 0, "b": 0}
        done = asyncio.Event()

        def counter(name: str) -> Callable[[int], Any]:
            async def handle(n: int) -> None:
                got[name] += 1
                if sum(got.values()) == total:
                    done.set()
            return handle

        a.on(address, counter("a"))
        b.on(address, counter("b"))
        await self.started(a, b, client)
        await self.until_routed(client, address, 2)
        for i in range(total):
            await client.send(address, i)
        await asyncio.wait_for(done.wait(), WAIT)
        if engine:  # NATS picks a queue group's member at random: far from 25 % is one in 10**12
            assert min(got.values()) >= total // 4, got
        else:
            assert got == {"a": 5, "b": 5}

    async def test_publish_reaches_every_handler_once(self, nodes: Nodes, address: str) -> None:
        a, b, publisher = await nodes(3)
        got: list[tuple[str, int]] = []
        done = asyncio.Event()

        def listener(name: str) -> Callable[[int], Any]:
            async def handle(n: int) -> None:
                got.append((name, n))
                if len(got) == 8:
                    done.set()
            return handle

        a.on(address, listener("a1"))
        a.on(address, listener("a2"))
        b.on(address, listener("b"))
        publisher.on(address, listener("local"))
        await self.started(a, b, publisher)
        await self.until_routed(publisher, address, 4)
        await publisher.publish(address, 7)
        await publisher.publish(address, 8)
        await asyncio.wait_for(done.wait(), WAIT)
        assert sorted(got) == sorted((n, v) for n in ("a1", "a2", "b", "local") for v in (7, 8))
        assert publisher.stats()["published"] == 2

    async def test_order_from_one_sender_is_kept(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        got: list[int] = []
        done = asyncio.Event()

        @server.on(address, concurrency=1)
        async def handle(n: int) -> None:
            got.append(n)
            if len(got) == 200:
                done.set()

        await self.started(server, client)
        for i in range(200):
            await client.send(address, i)
        await asyncio.wait_for(done.wait(), WAIT)
        assert got == list(range(200))

    # -- streams and unregister --------------------------------------------------

    async def test_stream_receives_and_replies(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        await self.started(server, client)
        async with server.stream(address, int) as messages:
            await self.until_routed(client, address, 1)
            pending = asyncio.ensure_future(client.request(address, 5, timeout=WAIT))
            msg = await messages.get(timeout=WAIT)
            assert msg.body == 5
            await msg.reply(msg.body + 1)
            assert await pending == 6
        await self._until_gone(client, address)
        with pytest.raises(NoHandlers):
            await client.send(address, 1)

    async def test_unregister_stops_delivery(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()

        async def handle(n: int) -> int:
            return n

        reg = server.on(address, handle)
        await self.started(server, client)
        await self.until_routed(client, address, 1)
        assert await client.request(address, 1, timeout=WAIT) == 1
        reg.unregister()
        await self._until_gone(client, address)
        with pytest.raises(NoHandlers):
            await client.request(address, 1, timeout=WAIT)

    async def _until_gone(self, bus: EventBus, address: str) -> None:
        await bus.wait_for_handlers(address, 0, exactly=True, timeout=self.settle + WAIT)

    async def test_node_that_stops_fails_what_it_owed(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes(stop_timeout=0.2)
        started = asyncio.Event()

        @server.on(address)
        async def hang(body: Any) -> None:
            started.set()
            await asyncio.sleep(3600)

        await self.started(server, client)
        pending = asyncio.ensure_future(client.request(address, None, timeout=60))
        await asyncio.wait_for(started.wait(), WAIT)
        await server.stop()
        with pytest.raises(RecipientGone):
            await asyncio.wait_for(pending, WAIT)
