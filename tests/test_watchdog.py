"""The watchdog names an async def handler that blocks the event loop, once per stall, and counts it."""

# ruff: noqa: ASYNC251 - a blocking time.sleep inside an async def is the scenario under test

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from addrbus import ConfigError, EventBus
from addrbus._core import watchdog as watchdog_module
from addrbus._core.watchdog import (
    DEFAULT_BLOCKING_THRESHOLD,
    JOIN_TIMEOUT,
    REPORT_BURST,
    Watchdog,
    check_blocking_threshold,
)
from tests.conftest import unique

WAIT = 5.0
#: Whether EventBus builds and starts its own watchdog (``blocking_threshold=``); until then the tests wire one.
WIRED = "blocking_threshold" in inspect.signature(EventBus).parameters


def handlers_of(bus: EventBus) -> Callable[[], list[tuple[str, Callable[..., Any]]]]:
    """What the bus hands its watchdog: every local registration's address and handler."""
    return lambda: [(reg.address, reg.handler) for regs in bus._router.local.values() for reg in regs]


@asynccontextmanager
async def watched(threshold: float = 0.1) -> AsyncIterator[tuple[EventBus, Watchdog]]:
    """A started memory:// bus and its watchdog: the bus's own, or one wired as the bus wires it."""
    if WIRED:
        async with EventBus("memory://", blocking_threshold=threshold) as bus:
            yield bus, bus._watchdog
        return
    bus = EventBus("memory://")
    dog = Watchdog(threshold, handlers_of(bus), bus._counters.count)
    async with bus:
        dog.start()
        try:
            yield bus, dog
        finally:
            dog.stop()


@pytest.fixture(autouse=True)
def looks_often(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the thread look every 20 ms while the loop is on time, so stalls of 0.15 s are sampled for sure.

    By default it looks every IDLE_WAKE (0.5 s), which costs the loop nothing measurable; the
    test marked ``default_looks`` checks a stall longer than that with the default.
    """
    if "default_looks" not in request.keywords:
        monkeypatch.setattr(watchdog_module, "IDLE_WAKE", 0.02)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="addrbus")
    return caplog


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "addrbus" and r.levelno == logging.WARNING and "event loop" in r.getMessage()]


def loop_stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "addrbus" and r.levelno == logging.INFO and "event loop" in r.getMessage()]


def held_for(message: str) -> float:
    found = re.search(r"held (?:the event loop )?for (\d+\.\d+) s", message)
    assert found is not None, message
    return float(found.group(1))


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


async def ticks_go_by(dog: Watchdog, n: int = 3) -> None:
    """Wait until the watchdog's timer ran ``n`` more times: any report of an earlier stall is out by then."""
    start = time.monotonic()
    await until(lambda: dog._last > start + n * dog.threshold / 2)


async def test_a_blocking_async_handler_is_named_once_with_its_time(logs: pytest.LogCaptureFixture) -> None:
    address = unique("orders.create")
    async with watched() as (bus, dog):
        @bus.on(address)
        async def create_order(order: int) -> int:
            time.sleep(0.3)  # the scenario: a blocking call inside an async def
            return order

        assert await bus.request(address, 7, timeout=WAIT) == 7
        await until(lambda: len(warnings(logs)) == 1)
        await ticks_go_by(dog)
        [message] = warnings(logs)  # one stall, one warning, however many ticks it spanned
        assert f"create_order at {address!r}" in message
        assert held_for(message) >= 0.3
        assert "plain def" in message and "asyncio.to_thread" in message
        assert __file__ in message and "line " in message  # the handler's line that blocked
        assert bus.stats()["stalls.handler"] == 1
        assert "stalls.loop" not in bus.stats()


async def test_two_separate_stalls_give_two_warnings(logs: pytest.LogCaptureFixture) -> None:
    address = unique("orders.slow")
    async with watched() as (bus, dog):
        @bus.on(address)
        async def slow(n: int) -> int:
            time.sleep(0.3)
            return n

        for n in (1, 2):
            assert await bus.request(address, n, timeout=WAIT) == n
            await until(lambda: len(warnings(logs)) == n)  # noqa: B023 - awaited within the iteration
        await ticks_go_by(dog)
        assert len(warnings(logs)) == 2
        assert bus.stats()["stalls.handler"] == 2


async def test_a_handler_that_awaits_is_not_reported(logs: pytest.LogCaptureFixture) -> None:
    address = unique("orders.wait")
    async with watched() as (bus, dog):
        @bus.on(address)
        async def waits(n: int) -> int:
            await asyncio.sleep(0.3)
            return n

        assert await bus.request(address, 1, timeout=WAIT) == 1
        await ticks_go_by(dog)
        assert warnings(logs) == []
        assert bus.stats().get("stalls.handler", 0) == 0


async def test_a_plain_def_handler_that_sleeps_is_not_reported(logs: pytest.LogCaptureFixture) -> None:
    address = unique("orders.thread")
    async with watched() as (bus, dog):
        @bus.on(address)
        def in_a_thread(n: int) -> int:  # runs in a worker thread: the loop goes on meanwhile
            time.sleep(0.3)
            return n

        assert await bus.request(address, 1, timeout=WAIT) == 1
        await ticks_go_by(dog)
        assert warnings(logs) == []
        assert bus.stats().get("stalls.handler", 0) == 0


class Service:
    async def handle(self, n: int) -> int:
        time.sleep(0.15)
        return n


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(n: int) -> int:
        return await fn(n)  # type: ignore[no-any-return]

    return wrapper


@logged
async def decorated(n: int) -> int:
    time.sleep(0.15)
    return n


class Callable_:
    async def __call__(self, n: int) -> int:
        time.sleep(0.15)
        return n


@pytest.mark.parametrize(("handler", "name"), [
    (Service().handle, "Service.handle"),
    (decorated, "decorated"),
], ids=["bound method", "decorated"])
async def test_wrapped_handlers_are_found_through_their_wrappers(logs: pytest.LogCaptureFixture,
                                                                  handler: Callable[..., Any], name: str) -> None:
    address = unique("wrapped")
    async with watched(0.05) as (bus, _):
        bus.on(address, handler)
        assert await bus.request(address, 3, timeout=WAIT) == 3
        await until(lambda: len(warnings(logs)) == 1)
        assert f"handler {name} at {address!r}" in warnings(logs)[0]


def test_partials_and_callable_objects_are_unwrapped_to_their_functions() -> None:
    # The bus refuses both as handlers today (their annotations do not resolve); the watchdog is ready for them.
    async def scaled(factor: int, n: int) -> int:
        return n * factor

    assert watchdog_module._codes(functools.partial(scaled, 2)) == [scaled.__code__]
    assert watchdog_module._name(functools.partial(scaled, 2)).endswith("scaled")
    assert watchdog_module._codes(Callable_()) == [Callable_.__call__.__code__]
    assert watchdog_module._name(Callable_()) == "Callable_"


def test_a_handler_seen_in_a_few_samples_only_is_not_blamed() -> None:
    async def quick(n: int) -> int:
        return n

    def main_loop() -> None:
        pass

    dog = Watchdog(0.1, lambda: [("orders.quick", quick)], [].append)
    handler, other = ((quick.__code__, 3), (main_loop.__code__, 9)), ((main_loop.__code__, 10),)
    assert dog._culprit([other, handler, other, other]) is None  # the loop held by a caller, between calls
    assert dog._culprit([other, handler, handler, other]) == (["orders.quick"], quick.__qualname__, quick.__code__, 3)
    assert dog._culprit([other]) is None and dog._culprit([]) is None


async def test_a_stall_outside_the_handlers_is_counted_as_the_loop(logs: pytest.LogCaptureFixture) -> None:
    async with watched() as (bus, dog):
        time.sleep(0.3)  # the test's own coroutine blocks, not a handler of the bus
        await until(lambda: bus.stats().get("stalls.loop", 0) == 1)
        await ticks_go_by(dog)
        assert warnings(logs) == []
        [message] = loop_stalls(logs)
        assert "not by a handler of this bus" in message and held_for(message) >= 0.3
        assert f"of {__file__}" in message  # where the loop thread was seen
        assert "stalls.handler" not in bus.stats()


async def test_reports_are_rationed_but_every_stall_is_counted(logs: pytest.LogCaptureFixture) -> None:
    address = unique("orders.flood")
    async with watched(0.05) as (bus, _):
        @bus.on(address)
        async def flood(n: int) -> int:
            time.sleep(0.12)
            return n

        stalls = REPORT_BURST + 2
        for n in range(stalls):
            await bus.request(address, n, timeout=WAIT)
            await until(lambda: bus.stats().get("stalls.handler", 0) == n + 1)  # noqa: B023 - awaited here
        assert len(warnings(logs)) == REPORT_BURST


async def test_without_current_frames_stalls_are_still_counted(logs: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchdog_module, "_current_frames", None)  # as on an interpreter without it
    address = unique("orders.pypy")
    async with watched() as (bus, dog):
        assert dog.thread is None

        @bus.on(address)
        async def blocks(n: int) -> int:
            time.sleep(0.3)
            return n

        await bus.request(address, 1, timeout=WAIT)
        await until(lambda: bus.stats().get("stalls.loop", 0) == 1)
        assert "not CPython" in loop_stalls(logs)[0]


async def test_a_failing_handler_listing_leaves_the_stall_counted(logs: pytest.LogCaptureFixture) -> None:
    def broken() -> list[tuple[str, Callable[..., Any]]]:
        raise RuntimeError("dictionary changed size during iteration")

    counts: list[str] = []
    dog = Watchdog(0.1, broken, counts.append)
    dog.start()
    try:
        time.sleep(0.3)
        await until(lambda: counts == ["stalls.loop"])
        assert dog.thread is not None and dog.thread.is_alive()
    finally:
        dog.stop()


async def test_stop_ends_the_thread_promptly_and_start_again_works() -> None:
    counts: list[str] = []
    dog = Watchdog(60.0, list, counts.append)  # the thread wakes every 15 s: stop() must not wait for that
    dog.start()
    thread = dog.thread
    assert thread is not None and thread.is_alive() and thread.daemon
    started = time.monotonic()
    dog.stop()
    assert time.monotonic() - started < JOIN_TIMEOUT
    assert not thread.is_alive() and dog.thread is None
    dog.stop()  # idempotent
    dog.start()
    again = dog.thread
    assert again is not None and again is not thread and again.is_alive()
    dog.stop()
    assert not again.is_alive()
    assert counts == []


async def test_a_threshold_of_none_starts_nothing() -> None:
    dog = Watchdog(check_blocking_threshold(None), list, [].append)
    dog.start()
    assert dog.thread is None and dog._timer is None
    dog.stop()


wired = pytest.mark.skipif(not WIRED, reason="EventBus has no blocking_threshold= yet")


@wired
async def test_the_bus_starts_and_stops_its_watchdog() -> None:
    bus = EventBus("memory://")
    assert bus._watchdog.threshold == DEFAULT_BLOCKING_THRESHOLD
    async with bus:
        thread = bus._watchdog.thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive() and bus._watchdog.thread is None


@wired
async def test_a_bus_without_a_watchdog() -> None:
    async with EventBus("memory://", blocking_threshold=None) as bus:
        assert bus._watchdog.thread is None and bus._watchdog._timer is None


@wired
def test_the_bus_refuses_a_bad_blocking_threshold() -> None:
    with pytest.raises(ConfigError, match="blocking_threshold"):
        EventBus("memory://", blocking_threshold=-1)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, None), (0.0, None), (0.1, 0.1), (1, 1.0),
                                                 (0.01, 0.01), (3600, 3600.0)])
def test_blocking_threshold_values(value: Any, expected: float | None) -> None:
    assert check_blocking_threshold(value) == expected


@pytest.mark.parametrize("value", [-0.1, 0.001, 3601, float("nan"), float("inf"), True, "0.1"])
def test_blocking_threshold_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="blocking_threshold") as raised:
        check_blocking_threshold(value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.default_looks
async def test_with_the_default_looks_a_stall_longer_than_them_is_named(logs: pytest.LogCaptureFixture) -> None:
    assert watchdog_module.IDLE_WAKE == 0.5
    async with watched() as (bus, _):
        @bus.on("jobs.slow")
        async def slow(n: int) -> int:
            time.sleep(0.7)  # noqa: ASYNC251 - the scenario: longer than the thread's idle looks
            return n

        assert await bus.request("jobs.slow", 1, timeout=5) == 1
        for _ in range(300):  # bounded: the warning comes on the loop's next timer run
            if bus.stats().get("stalls.handler"):
                break
            await asyncio.sleep(0.01)
    assert bus.stats().get("stalls.handler") == 1
    assert any("jobs.slow" in r.getMessage() and "slow" in r.getMessage() for r in logs.records)
