"""What a full handler backlog does: wait for room (the default), drop new, or drop oldest."""

from __future__ import annotations

import asyncio

import pytest

from addrbus import ConfigError, EventBus, RecipientFailure, RequestTimeout
from tests.conftest import unique

WAIT = 5.0


async def test_a_tight_loop_of_5000_publishes_to_a_slow_listener_delivers_all_in_order() -> None:
    address = unique("slow")
    bus = EventBus(max_queue=50)
    got: list[int] = []

    @bus.on(address, concurrency=1)
    async def slow(n: int) -> None:
        await asyncio.sleep(0)  # slower than the publisher: it yields on every message
        got.append(n)

    async with bus:
        for n in range(5000):
            await bus.publish(address, n)
        await bus.drain()
    assert got == list(range(5000))
    assert bus.stats().get("dropped.overflow", 0) == 0


class Gate:
    """A handler that blocks until opened, and says when its first run started."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.got: list[int] = []

    async def handle(self, n: int) -> int:
        self.entered.set()
        await self.open.wait()
        self.got.append(n)
        return n


async def blocked(bus: EventBus, address: str, gate: Gate) -> None:
    """Start one message and wait until the handler is inside it: from now on the backlog only fills."""
    await bus.publish(address, -1)
    await asyncio.wait_for(gate.entered.wait(), WAIT)


@pytest.mark.parametrize(("policy", "kept"), [("drop_new", [0, 1, 2, 3, 4]), ("drop_oldest", [15, 16, 17, 18, 19])])
async def test_drop_policies_keep_what_they_say_and_count_exactly(policy: str, kept: list[int]) -> None:
    address = unique("full")
    bus = EventBus()
    gate = Gate()
    bus.on(address, gate.handle, max_queue=5, concurrency=1, overflow=policy)  # type: ignore[call-overload]
    async with bus:
        await blocked(bus, address, gate)
        for n in range(20):
            await bus.publish(address, n)  # never waits
        assert bus.stats().get("dropped.overflow", 0) == 15
        gate.open.set()
        await bus.drain()
    assert gate.got == [-1, *kept]


async def test_drop_oldest_answers_the_request_it_drops_at_once() -> None:
    address = unique("evict")
    bus = EventBus()
    gate = Gate()
    bus.on(address, gate.handle, max_queue=1, concurrency=1, overflow="drop_oldest")
    async with bus:
        await blocked(bus, address, gate)
        first = asyncio.ensure_future(bus.request(address, 1, timeout=WAIT))
        await asyncio.sleep(0)  # let it reach the backlog
        second = asyncio.ensure_future(bus.request(address, 2, timeout=WAIT))
        with pytest.raises(RecipientFailure) as info:
            await asyncio.wait_for(first, WAIT)
        assert info.value.code == 503
        gate.open.set()
        assert await asyncio.wait_for(second, WAIT) == 2
    assert bus.stats().get("dropped.overflow", 0) == 1


async def test_wait_gives_up_after_overflow_timeout_then_drops_at_once_until_there_is_room() -> None:
    address = unique("stuck")
    bus = EventBus()
    gate = Gate()
    bus.on(address, gate.handle, max_queue=2, concurrency=1, overflow_timeout=0.2)
    async with bus:
        loop = asyncio.get_running_loop()
        await blocked(bus, address, gate)
        await bus.publish(address, 0)
        await bus.publish(address, 1)  # the backlog is full now
        began = loop.time()
        await bus.publish(address, 2)  # waits 0.2 s for room, then drops
        assert loop.time() - began >= 0.19
        assert bus.stats().get("dropped.overflow", 0) == 1
        quick = asyncio.ensure_future(bus.publish(address, 3))  # stuck: drops without waiting
        await asyncio.wait_for(quick, 0.15)
        assert bus.stats().get("dropped.overflow", 0) == 2
        with pytest.raises(RecipientFailure) as info:  # a request dropped so is answered at once
            await asyncio.wait_for(bus.request(address, 4, timeout=WAIT), 0.15)
        assert info.value.code == 503
        gate.open.set()
        await bus.drain()
        gate.entered.clear()
        gate.open.clear()
        await blocked(bus, address, gate)  # room again: the handler waits again, not drops
        await bus.publish(address, 5)
        await bus.publish(address, 6)
        waiting = asyncio.ensure_future(bus.publish(address, 7))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.open.set()
        await asyncio.wait_for(waiting, WAIT)
        await bus.drain()
    assert gate.got == [-1, 0, 1, -1, 5, 6, 7]
    assert bus.stats().get("dropped.overflow", 0) == 3


async def test_a_request_waiting_for_room_ends_at_its_own_deadline() -> None:
    address = unique("deadline")
    bus = EventBus()
    gate = Gate()
    bus.on(address, gate.handle, max_queue=1, concurrency=1)
    async with bus:
        await blocked(bus, address, gate)
        await bus.publish(address, 0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(RequestTimeout):
            await bus.request(address, 1, timeout=0.2)
        assert 0.19 <= loop.time() - began < 1.0
        late = asyncio.ensure_future(bus.request(address, 2, timeout=WAIT))
        await asyncio.sleep(0.05)
        gate.open.set()  # room comes while it waits: it is queued and answered
        assert await asyncio.wait_for(late, WAIT) == 2
        assert bus.stats()["pending_requests"] == 0


async def test_a_stream_that_waits_loses_nothing_and_one_that_drops_counts() -> None:
    address = unique("stream")
    bus = EventBus()
    async with bus:
        async with bus.stream(address, int, max_queue=3) as messages:
            async def read() -> list[int]:
                out = []
                for _ in range(50):
                    msg = await messages.get(timeout=WAIT)
                    out.append(msg.body)
                    await asyncio.sleep(0)
                return out

            reader = asyncio.ensure_future(read())
            for n in range(50):
                await bus.publish(address, n)
            assert await asyncio.wait_for(reader, WAIT) == list(range(50))
        async with bus.stream(address, int, max_queue=3, overflow="drop_new") as dropping:
            for n in range(10):
                await bus.publish(address, n)
            await bus.drain()
            assert [(await dropping.get(timeout=WAIT)).body for _ in range(3)] == [0, 1, 2]
            assert bus.stats().get("dropped.overflow", 0) == 7  # at the stream's backlog, or in the stream


@pytest.mark.parametrize("options", [{"overflow": "block"}, {"overflow": None}, {"overflow_timeout": 0},
                                     {"overflow_timeout": -1}, {"overflow_timeout": float("nan")},
                                     {"overflow_timeout": "5"}])
def test_bad_overflow_settings_fail_at_the_call(options: dict[str, object]) -> None:
    bus = EventBus()

    async def handle(n: int) -> None:
        return None

    with pytest.raises(ConfigError, match="overflow"):
        bus.on("a", handle, **options)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="overflow"):
        bus.stream("a", **options)  # type: ignore[arg-type]
