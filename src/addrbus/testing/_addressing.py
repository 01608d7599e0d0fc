"""Contract cases for the addressing features: waiting for a message, bounded streams, required handlers and
the bus-wide consumer table. :class:`~addrbus.testing.contract.BusContract` runs them on every transport."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from .._exceptions import NoHandlers, RequestTimeout
from .._message import Message

if TYPE_CHECKING:
    from .._bus import EventBus

WAIT = 10.0  # seconds: generous bounds on waits that should take milliseconds

#: ``await nodes(count=2, **options)``: that many unstarted buses sharing the transport.
Nodes = Callable[..., Awaitable[list["EventBus"]]]


class AddressingCases:
    """What users of other buses ask for, on this transport (mixed into ``BusContract``)."""

    settle: float

    if TYPE_CHECKING:

        async def started(self, *buses: EventBus) -> None: ...
        async def until_routed(self, bus: EventBus, address: str, handlers: int) -> None: ...
        async def _until_gone(self, bus: EventBus, address: str) -> None: ...

    async def test_wait_for_returns_the_first_message_where_holds(self, nodes: Nodes, address: str) -> None:
        waiter, sender = await nodes()
        await self.started(waiter, sender)
        waiting = asyncio.ensure_future(waiter.wait_for(address, timeout=WAIT, body_type=int,
                                                        where=lambda msg: msg.body > 2))
        await self.until_routed(sender, address, 1)
        for n in range(1, 6):
            await sender.publish(address, n)
        msg = await waiting
        assert (msg.body, msg.address, msg.sender) == (3, address, sender.node_id)
        await self._until_gone(sender, address)  # it stopped listening once it had its message

    async def test_wait_for_times_out_and_refuses_bad_timeouts(self, nodes: Nodes, address: str) -> None:
        (bus,) = await nodes(1)
        await self.started(bus)
        with pytest.raises(RequestTimeout, match="no message"):
            await bus.wait_for(address, timeout=0.05)
        for bad in (0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="timeout"):
                await bus.wait_for(address, timeout=bad)
        assert bus.consumers() == {}

    async def test_stream_with_a_limit_ends_after_that_many(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        await self.started(server, client)
        async with server.stream(address, int, limit=3) as messages:
            await self.until_routed(client, address, 1)
            for n in range(3):
                await client.send(address, n)
            got = [msg.body async for msg in messages]
            with pytest.raises(StopAsyncIteration):
                await messages.get(timeout=WAIT)
        assert got == [0, 1, 2]
        await self._until_gone(client, address)
        bad_limits: list[Any] = [0, -2, 1.5, True]
        for bad in bad_limits:
            with pytest.raises(ValueError, match="limit"):
                server.stream(address, limit=bad)

    async def test_publish_can_require_a_handler(self, nodes: Nodes, address: str) -> None:
        server, client = await nodes()
        await self.started(server, client)
        await client.publish(address, 1)  # fire-and-forget by default: nobody listens, no error
        with pytest.raises(NoHandlers):
            await client.publish(address, 2, require_handlers=True)
        assert client.stats()["failures.no_handlers"] == 1
        heard: asyncio.Queue[int] = asyncio.Queue()

        @server.on(address)
        async def hear(n: int) -> None:
            heard.put_nowait(n)

        await self.until_routed(client, address, 1)
        await client.publish(address, 3, require_handlers=True)
        assert await asyncio.wait_for(heard.get(), WAIT) == 3

    async def test_consumers_follow_nodes_joining_and_leaving(self, nodes: Nodes, address: str) -> None:
        a, b, observer = await nodes(3)
        other = address + ".other"

        async def handle(body: Any) -> None:
            return None

        a.on(address, handle)
        a.on(address, handle)
        b.on(address, handle)
        b.on(other, handle)
        await self.started(a, b, observer)
        await self.until_routed(observer, address, 3)
        await self.until_routed(observer, other, 1)
        assert observer.consumers() == {address: 3, other: 1}
        assert a.consumers() == {address: 3, other: 1}
        await b.stop()
        await observer.wait_for_handlers(address, 2, exactly=True, timeout=self.settle + WAIT)
        await self._until_gone(observer, other)
        assert observer.consumers() == {address: 2}

    async def test_node_targets_publish_send_and_request_at_one_node(self, nodes: Nodes, address: str) -> None:
        buses = await nodes(3)
        heard: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()

        def handler(bus: EventBus) -> Callable[[Any], Awaitable[str]]:
            async def handle(msg: Message[int]) -> str:
                heard.put_nowait((bus.node_id, msg.headers.get("kind", ""), msg.body))
                return bus.node_id
            return handle

        for bus in buses:
            bus.on(address, handler(bus))
        client = buses[0]  # it consumes the address too: node= may name this node itself
        await self.started(*buses)
        await self.until_routed(client, address, 3)
        for target in buses:
            node = target.node_id
            await client.publish(address, 1, node=node, headers={"kind": "publish"})
            await client.send(address, 2, node=node, headers={"kind": "send"})
            assert await client.request(address, 3, node=node, timeout=WAIT) == node
            got = [await asyncio.wait_for(heard.get(), WAIT) for _ in range(3)]
            assert sorted(got) == [(node, "", 3), (node, "publish", 1), (node, "send", 2)], got
        assert heard.empty()
        stranger = "0123456789abcdef"
        with pytest.raises(NoHandlers, match=stranger):
            await client.send(address, 1, node=stranger)
        with pytest.raises(NoHandlers):
            await client.publish(address + ".nobody", 1, node=buses[1].node_id)
        with pytest.raises(NoHandlers):
            await client.request(address + ".nobody", 1, node=client.node_id, timeout=WAIT)
        bad_nodes: list[Any] = ["", "node-1", "0123456789ABCDEF", 7, buses[1].node_id + "0"]
        for bad in bad_nodes:
            with pytest.raises(ValueError, match="node id"):
                await client.send(address, 1, node=bad)

    async def test_frames_from_other_nodes_never_wait_for_a_full_backlog(self, nodes: Nodes, address: str) -> None:
        # overflow "wait": only local callers wait; frames from the network drop the newest
        await self._overflow_from_the_network(nodes, address, "wait", [0, 1, 2, 3, 4])

    async def test_drop_oldest_keeps_the_newest_frames_from_other_nodes(self, nodes: Nodes, address: str) -> None:
        await self._overflow_from_the_network(nodes, address, "drop_oldest", [15, 16, 17, 18, 19])

    async def _overflow_from_the_network(self, nodes: Nodes, address: str, policy: Any, kept: list[int]) -> None:
        server, client = await nodes()
        entered, release = asyncio.Event(), asyncio.Event()
        got: list[int] = []

        @server.on(address, max_queue=5, concurrency=1, overflow=policy)
        async def slow(n: int) -> None:
            entered.set()
            await release.wait()
            got.append(n)

        await self.started(server, client)
        await self.until_routed(client, address, 1)
        await client.send(address, -1)
        await asyncio.wait_for(entered.wait(), WAIT)  # the handler is busy: from here its backlog only fills
        for n in range(20):
            await client.send(address, n)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while server.stats().get("dropped.overflow", 0) < 15:  # a bounded poll: frames arrive when they do
            assert loop.time() < deadline, server.stats()
            await asyncio.sleep(0.01)
        release.set()
        await server.drain()
        assert got == [-1, *kept]
        assert server.stats()["dropped.overflow"] == 15

    async def test_patterns_and_exact_consumers_share_an_address(self, nodes: Nodes, address: str) -> None:
        one, many, client = await nodes(3)  # "a.*" on one node, "a.>" and the exact address on another
        base = address.replace(".", "-")
        star, rest, exact = f"{base}.*", f"{base}.>", f"{base}.kitchen"
        heard: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()

        def handler(name: str) -> Callable[[Message[int]], Awaitable[str]]:
            async def handle(msg: Message[int]) -> str:
                heard.put_nowait((name, msg.address, msg.body))
                return name
            return handle

        one.consumer(star, handler("star"))
        many.consumer(rest, handler("rest"))
        many.consumer(exact, handler("exact"))
        await self.started(one, many, client)
        await self.until_routed(client, exact, 3)  # an exact address counts the patterns it matches
        await self.until_routed(client, f"{base}.kitchen.temp", 1)
        await client.publish(exact, 1)
        await client.publish(f"{base}.kitchen.temp", 2)  # "a.*" is one token only
        await client.publish(f"{base}.hall", 3)
        got = sorted([await asyncio.wait_for(heard.get(), WAIT) for _ in range(6)])
        assert got == sorted([("star", exact, 1), ("rest", exact, 1), ("exact", exact, 1),
                              ("rest", f"{base}.kitchen.temp", 2), ("star", f"{base}.hall", 3),
                              ("rest", f"{base}.hall", 3)])
        replies = [await client.request(exact, 0, timeout=WAIT) for _ in range(6)]
        assert sorted(replies) == ["exact", "exact", "rest", "rest", "star", "star"]  # round-robin over all three
        for _ in range(6):
            await asyncio.wait_for(heard.get(), WAIT)
        assert client.consumers() == {star: 1, rest: 1, exact: 1}
        with pytest.raises(NoHandlers):
            await client.send(base, 1)  # "a.>" needs at least one more token
        for bad in (star, rest, f"{base}.*.x"):
            with pytest.raises(ValueError, match="pattern"):
                await client.publish(bad, 1)
            with pytest.raises(ValueError, match="pattern"):
                await client.request(bad, 1, timeout=WAIT)
        assert heard.empty()

    async def test_groups_share_each_publish_and_ungrouped_listeners_hear_all(self, nodes: Nodes,
                                                                              address: str) -> None:
        buses = await nodes(3)
        got: dict[str, int] = {}
        total = 3 * 1000
        done = asyncio.Event()

        def handler(name: str) -> Callable[[int], Awaitable[None]]:
            async def handle(n: int) -> None:
                got[name] = got.get(name, 0) + 1
                if sum(got.values()) == total:
                    done.set()
            return handle

        for i, bus in enumerate(buses):
            bus.on(address, handler(f"mailer {i}"), group="mailer")
            if i:
                bus.on(address, handler(f"billing {i}"), group="billing")
        buses[2].on(address, handler("audit"))  # ungrouped: every publish
        await self.started(*buses)
        for bus in buses:
            await self.until_routed(bus, address, 6)
        for n in range(1000):
            await buses[n % 3].publish(address, n)
        await asyncio.wait_for(done.wait(), WAIT * 3)
        per_group = {g: sum(c for name, c in got.items() if name.startswith(g)) for g in ("mailer", "billing", "audit")}
        assert per_group == {"mailer": 1000, "billing": 1000, "audit": 1000}, got
        assert buses[0].consumers() == {address: 6}
        assert buses[0].nodes() == {buses[0].node_id: {address: 1}, buses[1].node_id: {address: 2},
                                    buses[2].node_id: {address: 3}}
        # A send still reaches one handler among all six.
        await buses[0].send(address, -1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while sum(got.values()) < total + 1:  # a bounded poll for the one extra delivery
            assert loop.time() < deadline, got
            await asyncio.sleep(0.01)
        assert sum(got.values()) == total + 1
        bad_groups: list[Any] = ["", "a\nb", "x" * 65, 7]
        for bad in bad_groups:
            with pytest.raises(ValueError, match="group"):
                buses[0].on(address, handler("bad"), group=bad)

