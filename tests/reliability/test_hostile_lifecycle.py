"""Issue 12, items 9-11: start, stop and the bus's loop, under concurrent or careless callers.

Each test asserts the behaviour the issue asks for, on every transport it
applies to. Those that fail on today's code carry ``xfail(strict=True)``: the
fix flips them to passing, and the strict mark then asks for its own removal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest

from addrbus import BusError, EventBus, NoHandlers
from tests._hostile import WAIT, issue, on_every_transport, timed
from tests.conftest import unique
from tests.fixtures_redis import RedisServer
from tests.reliability.conftest import Net
from tests.security._harness import eventually


async def tasks_left(before: set[asyncio.Task[Any]], bound: float = 2.0) -> list[str]:
    """Return the names of tasks started since ``before`` that are still running after ``bound`` seconds."""
    me = asyncio.current_task()
    new = {t for t in asyncio.all_tasks() if t not in before and t is not me}
    if new:
        await asyncio.wait(new, timeout=bound)
    return sorted(t.get_name() + ": " + repr(t.get_coro()) for t in new if not t.done())


# -- 9. concurrent start() and stop() -------------------------------------------------------------


OVERLAPS = [
    pytest.param("memory", "start+start", id="start+start-memory"),
    pytest.param("udp", "start+start", id="start+start-udp", marks=pytest.mark.multicast),
    pytest.param("redis", "start+start", id="start+start-redis",
                 marks=[pytest.mark.redis, issue("item 9 (two concurrent start() calls on redis:// make two nodes)")]),
    pytest.param("memory", "start+stop", id="start+stop-memory"),
    pytest.param("udp", "start+stop", id="start+stop-udp",
                 marks=[pytest.mark.multicast, issue("item 9 (a stop() during start() on udp:// leaves a task)")]),
    pytest.param("redis", "start+stop", id="start+stop-redis", marks=pytest.mark.redis),
]


@pytest.mark.parametrize(("net", "overlap"), OVERLAPS, indirect=["net"])
async def test_concurrent_starts_and_stops_leave_one_node_and_nothing_behind(
    net: Net, address: str, overlap: str
) -> None:
    """Overlapping ``start()``/``stop()`` calls are safe: one node, then nothing left once stopped.

    ``start+start``: two starts at once both return, and peers see one node;
    two stops at once both return. ``start+stop``: a stop overlapping a start
    returns, whatever state it leaves, and a final ``stop()`` cleans up.
    Either way, once stopped: peers see no handler, no task the bus started is
    still running, and the handler never runs again. Today this holds where
    ``start()`` sets the bus running before its first suspension (memory://,
    and udp:// for two starts), and fails elsewhere.
    """
    observer = net.bus(startup_wait=0.05)
    await observer.start()
    bus = net.bus(startup_wait=0.05)
    calls: list[int] = []

    async def handler(x: int) -> None:
        calls.append(x)

    bus.on(address, handler)
    before = set(asyncio.all_tasks())
    if overlap == "start+start":
        outcomes = await asyncio.gather(bus.start(), bus.start(), return_exceptions=True)
        assert outcomes == [None, None], f"concurrent start() calls: {outcomes}"
        assert bus.running
        await observer.wait_for_handlers(address, 1, timeout=WAIT)
        holders = sorted(node for node, addrs in observer.nodes().items() if address in addrs)
        assert holders == [bus.node_id], f"peers see {len(holders)} nodes for one bus"
        outcomes = await asyncio.gather(bus.stop(), bus.stop(), return_exceptions=True)
        assert outcomes == [None, None], f"concurrent stop() calls: {outcomes}"
    else:
        outcomes = await asyncio.gather(bus.start(), bus.stop(), return_exceptions=True)
        assert outcomes == [None, None], f"overlapping start() and stop(): {outcomes}"
        await bus.stop()
    assert not bus.running
    seen, _ = await timed(observer.wait_for_handlers(address, 0, exactly=True, timeout=2.0))
    assert seen == 0, f"peers still see a handler of the stopped bus: {seen!r}"
    left = await tasks_left(before)
    assert not left, f"{len(left)} tasks still running after stop(): {left}"
    handled = len(calls)
    with suppress(NoHandlers):
        await observer.send(address, 2)
    await observer.publish(address, 3)
    ping = unique("ping")
    got = asyncio.Event()

    @observer.on(ping)
    async def pinged() -> None:
        got.set()

    await observer.publish(ping)  # local: once it ran, anything sent before had its chance
    async with asyncio.timeout(WAIT):
        await got.wait()
    assert len(calls) == handled, "the handler ran after stop()"


def redis_clients(server: RedisServer) -> int:
    """Return how many connections the server holds, the one asking included."""
    listing: bytes = server.cli("CLIENT", "LIST")
    return len(listing.splitlines())


@pytest.mark.redis
@issue("item 9 (two concurrent start() calls on redis:// leak two connections)")
async def test_concurrent_starts_on_redis_open_one_pair_of_connections(
    fault_redis: RedisServer, make_bus: Callable[..., EventBus]
) -> None:
    """Two concurrent ``start()`` calls open one subscriber and one publisher; ``stop()`` closes both."""
    baseline = redis_clients(fault_redis)
    bus = make_bus(fault_redis.url, namespace=unique("ns"), startup_wait=0.05)
    await asyncio.gather(bus.start(), bus.start(), return_exceptions=True)
    during = redis_clients(fault_redis) - baseline
    await bus.stop()
    with suppress(AssertionError):
        await eventually(lambda: redis_clients(fault_redis) == baseline, "the bus's connections to close", 2.0)
    after = redis_clients(fault_redis) - baseline
    assert (during, after) == (2, 0), f"{during} connections while running, {after} left after stop()"


# -- 10. stop() is bounded whatever handlers do --------------------------------------------------

STOP_TIMEOUT = 1.0
MARGIN = 1.0  # what stop() may take beyond stop_timeout: saying goodbye, closing the transport
HOLD = 3.0  # seconds a stubborn handler holds out; today's stop() waits for all of it


@issue("item 10 (stop() waits for as long as a handler refuses to end)")
@on_every_transport
@pytest.mark.parametrize("stubbornness", ["swallows-cancellation", "blocks-its-thread"])
async def test_stop_returns_within_stop_timeout_whatever_handlers_do(
    net: Net, address: str, stubbornness: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``stop()`` returns within ``stop_timeout`` + 1 s, and logs each handler it had to abandon.

    ``swallows-cancellation``: an async handler that catches CancelledError and
    keeps waiting; ``blocks-its-thread``: a plain function, run in a worker
    thread, that blocks (a thread cannot be cancelled). Each holds out for
    ``HOLD`` seconds at most, so that the test ends even today.
    """
    caplog.set_level(logging.WARNING, logger="addrbus")
    loop = asyncio.get_running_loop()
    bus = net.bus(startup_wait=0.05, stop_timeout=STOP_TIMEOUT)
    entered = asyncio.Event()
    release = asyncio.Event()
    gate = threading.Event()

    async def swallows(x: int) -> None:
        entered.set()
        give_up = loop.time() + HOLD
        for _ in range(10_000):  # bounded: each turn waits, or ends the handler
            left = give_up - loop.time()
            if release.is_set() or left <= 0:
                return
            try:
                async with asyncio.timeout(left):
                    await release.wait()
            except (asyncio.CancelledError, TimeoutError):  # noqa: PERF203 - swallowing is the point
                continue

    def blocks(x: int) -> None:
        loop.call_soon_threadsafe(entered.set)
        gate.wait(HOLD)

    stubborn = swallows if stubbornness == "swallows-cancellation" else blocks
    bus.on(address, stubborn)
    await bus.start()
    await bus.send(address, 1)
    async with asyncio.timeout(WAIT):
        await entered.wait()
    try:
        outcome, took = await timed(bus.stop())
    finally:
        release.set()
        gate.set()
    assert outcome is None, f"stop() ended with {outcome!r}"
    assert took < STOP_TIMEOUT + MARGIN, f"stop() took {took:.1f} s with stop_timeout={STOP_TIMEOUT}"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("addrbus") and r.levelno >= logging.WARNING]
    assert any(address in line or stubborn.__name__ in line for line in lines), (
        f"no log line names the abandoned handler: {lines}"
    )


# -- 11. a running bus used from another loop or thread -------------------------------------------


def _calls() -> dict[str, Callable[[EventBus, str], Any]]:
    async def handler(x: int) -> None:
        return None

    return {
        "publish": lambda bus, address: bus.publish(address, 1),
        "send": lambda bus, address: bus.send(address, 1),
        "request": lambda bus, address: bus.request(address, 1, timeout=1.0),
        "request_message": lambda bus, address: bus.request_message(address, 1, timeout=1.0),
        "on": lambda bus, address: bus.on(unique("late"), handler),
        "consumer": lambda bus, address: bus.consumer(unique("late"), handler),
    }


CALLS = _calls()


@issue("item 11 (a running bus used from another thread's loop runs handlers on the caller's loop)")
@on_every_transport
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_a_running_bus_used_from_another_loop_raises_bus_error(net: Net, address: str, call: str) -> None:
    """Every call on a running bus from another thread's event loop raises BusError naming the fix.

    The message names ``asyncio.run_coroutine_threadsafe`` (on the bus's own
    loop); no handler runs on the caller's loop, and the bus keeps serving its own.
    """
    bus = net.bus(startup_wait=0.05)
    loops: list[asyncio.AbstractEventLoop] = []

    async def echo(x: int) -> int:
        loops.append(asyncio.get_running_loop())
        return x

    bus.on(address, echo)
    await bus.start()

    def elsewhere() -> BaseException | None:
        async def use() -> None:
            async with asyncio.timeout(2.0):
                result = CALLS[call](bus, address)
                if inspect.isawaitable(result):
                    await result

        try:
            asyncio.run(use())
        except BaseException as exc:  # reported to the test, whatever it is
            return exc
        return None

    error = await asyncio.wait_for(asyncio.to_thread(elsewhere), WAIT)
    assert isinstance(error, BusError), f"{call}() from another loop: {error!r}"
    assert "run_coroutine_threadsafe" in str(error), f"the error does not name the fix: {error}"
    mine = asyncio.get_running_loop()
    assert all(loop is mine for loop in loops), "a handler ran on the caller's loop"
    assert await bus.request(address, 3, timeout=WAIT) == 3
