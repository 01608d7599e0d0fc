"""Eager dispatch (Python 3.12+): a local handler that never suspends ends within the caller's call.

Every semantic of the queued path holds on the eager one: backlog bound and
overflow, per-handler concurrency, a raising handler's ``RecipientFailure``,
a cancelled requester leaving the handler running, order per sender,
timeouts, ``stop()`` and ``drain()``. On 3.11 the first tests check the
queued path instead (the handler runs on a later loop turn).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys

import pytest

from addrbus import BusStopped, EventBus, RecipientFailure, RequestTimeout
from addrbus._core import eager
from tests.conftest import unique
from tests.test_membership import until

WAIT = 5.0
EAGER = sys.version_info >= (3, 12)


def turned() -> list[bool]:
    """Return a flag the loop sets on its next turn."""
    flag = [False]
    asyncio.get_running_loop().call_soon(flag.__setitem__, 0, True)
    return flag


def echo_bus() -> tuple[EventBus, str]:
    """Return a bus with a handler that answers ``n + 1`` without suspending, and its address."""
    bus = EventBus()
    address = unique("echo")

    @bus.on(address)
    async def echo(n: int) -> int:
        return n + 1

    return bus, address


async def test_a_request_to_a_handler_that_never_suspends_needs_no_loop_turn_on_312() -> None:
    bus, address = echo_bus()
    async with bus:
        flag = turned()
        assert await bus.request(address, 41) == 42
        assert flag[0] is not EAGER  # 3.12+: answered before the loop turned; 3.11: a turn went by
        message = await bus.request_message(address, 1)
        assert message.body == 2
        assert message.correlation_id  # a request answered at once still has an id
        assert bus.stats()["requests"] == 2 and bus.stats()["replies"] == 2


async def test_publishes_and_sends_are_left_to_runners_that_take_a_burst_in_one_go() -> None:
    bus = EventBus()
    address = unique("news")
    got: list[tuple[str, int]] = []
    tasks: set[asyncio.Task[object] | None] = set()

    @bus.on(address)
    async def a(n: int) -> None:
        await asyncio.sleep(0)  # suspends: a sibling run takes the next message meanwhile
        got.append(("a", n))

    @bus.on(address)
    async def b(n: int) -> None:
        tasks.add(asyncio.current_task())
        got.append(("b", n))

    @bus.consumer(unique("one"))
    async def one(n: int) -> None:
        got.append(("one", n))

    async with bus:
        for n in range(50):
            await bus.publish(address, n)
        await bus.send(one.registration.address, 99)  # type: ignore[attr-defined]
        assert got == []  # queued on every Python: nobody waits for a publish's handlers
        await bus.drain()
        assert sorted(got) == sorted([("a", n) for n in range(50)] + [("b", n) for n in range(50)] + [("one", 99)])
        assert [n for who, n in got if who == "b"] == list(range(50))  # in order
        assert len(tasks) == 1  # one runner took b's fifty


async def test_the_users_task_factory_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    made: list[object] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: object, **kw: object) -> asyncio.Task[object]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kw)  # type: ignore[arg-type]

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        bus, address = echo_bus()
        async with bus:
            assert await bus.request(address, 1) == 2
            assert loop.get_task_factory() is factory
            before = len(made)
            await asyncio.create_task(asyncio.sleep(0))
            assert len(made) == before + 1  # the user's own tasks still go through it
    finally:
        loop.set_task_factory(None)


async def test_a_raising_handler_fails_its_request_suspended_or_not(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    address = unique("boom")

    @bus.on(address)
    async def boom(suspend: bool) -> None:
        if suspend:
            await asyncio.sleep(0)
        raise KeyError("no such user")

    @bus.on(unique("cancels"))
    async def cancels(n: int) -> None:
        raise asyncio.CancelledError  # raised by the handler itself: a failure, not a cancellation

    async with bus:
        for suspend in (False, True):
            with caplog.at_level(logging.ERROR, logger="addrbus"), pytest.raises(RecipientFailure) as info:
                await bus.request(address, suspend)
            assert info.value.remote_type == "KeyError" and info.value.code == 500
        with pytest.raises(RecipientFailure) as info:
            await bus.request(cancels.registration.address, 1)  # type: ignore[attr-defined]
        assert info.value.remote_type == "CancelledError"
        assert bus.stats()["failures.handler"] == 3
        assert bus.stats()["failures.recipient_failure"] == 3
    assert sum("raised" in r.getMessage() for r in caplog.records) >= 2


async def test_a_reply_that_fails_its_response_type_is_refused_on_the_eager_path() -> None:
    bus = EventBus()
    address = unique("typed")

    @bus.on(address)
    async def wrong(n: int) -> str:
        return "not a number"

    async with bus:
        with pytest.raises(RecipientFailure) as info:
            await bus.request(address, 1, response_type=int)
        assert info.value.code == 502 and info.value.remote_type == "InvalidReply"


async def test_concurrency_and_the_backlog_bound_hold_for_direct_requests() -> None:
    bus = EventBus()
    address = unique("gate")
    opened = asyncio.Event()
    running = [0]
    peak = [0]

    async def gate(n: int) -> int:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await opened.wait()
        running[0] -= 1
        return n

    reg = bus.on(address, gate, concurrency=2, max_queue=2, overflow="drop_new")
    async with bus:
        requests = []
        for n in range(2):  # two run (started within the request on 3.12+)
            requests.append(asyncio.ensure_future(bus.request(address, n, timeout=WAIT)))
            await until(lambda n=n: running[0] == n + 1, "the handler runs")
        requests += [asyncio.ensure_future(bus.request(address, n, timeout=WAIT)) for n in (2, 3)]
        await until(lambda: reg.pending == 2, "two requests queue")
        with pytest.raises(RecipientFailure) as info:
            await bus.request(address, 99)  # two running, two queued: full
        assert info.value.code == 503
        opened.set()
        assert await asyncio.gather(*requests) == [0, 1, 2, 3]
        assert peak[0] == 2


async def test_cancelling_the_requester_leaves_a_suspended_handler_running() -> None:
    bus = EventBus()
    address = unique("slow")
    opened = asyncio.Event()
    finished: list[int] = []

    started: list[int] = []

    @bus.on(address)
    async def slow(n: int) -> int:
        started.append(n)
        await opened.wait()
        finished.append(n)
        return n

    async with bus:
        requester = asyncio.ensure_future(bus.request(address, 7))
        await until(lambda: started == [7], "the handler runs")
        requester.cancel()
        with pytest.raises(asyncio.CancelledError):
            await requester
        opened.set()
        assert await bus.drain(WAIT)
        assert finished == [7]
        assert bus.stats().get("dropped.late_reply", 0) == 1  # nobody waited for its reply any more


async def test_order_per_sender_holds_when_sends_are_queued_before_a_request() -> None:
    bus = EventBus()
    address = unique("ordered")
    got: list[int] = []
    opened = asyncio.Event()

    async def handle(n: int) -> int:
        if n == 0:
            await opened.wait()
        got.append(n)
        return n

    reg = bus.on(address, handle, concurrency=1)
    async with bus:
        await bus.send(address, 0)  # runs, and suspends
        for n in (1, 2, 3):
            await bus.send(address, n)  # queued behind it
        request = asyncio.ensure_future(bus.request(address, 4, timeout=WAIT))
        await until(lambda: reg.pending == 4, "the request queues behind the sends")
        opened.set()
        assert await request == 4
        assert got == [0, 1, 2, 3, 4]


async def test_a_suspended_direct_request_times_out_and_stop_fails_the_next() -> None:
    bus = EventBus(stop_timeout=0.2)
    address = unique("never")
    forever = asyncio.Event()

    started: list[int] = []

    @bus.on(address)
    async def never(n: int) -> None:
        started.append(n)
        await forever.wait()

    async with bus:
        with pytest.raises(RequestTimeout):
            await bus.request(address, 1, timeout=0.05)
        waiting = asyncio.ensure_future(bus.request(address, 2, timeout=WAIT))
        await until(lambda: started == [1, 2], "the second request's handler runs")
    with pytest.raises(BusStopped):
        await waiting


async def test_a_loop_of_requests_to_a_handler_that_never_suspends_still_lets_the_loop_turn() -> None:
    bus, address = echo_bus()
    async with bus:
        flag = turned()
        for n in range(eager.TURN_BUDGET + 10):
            await bus.request(address, n)
        assert flag[0]  # past the budget a request waits a loop turn, and the callback ran


async def test_nested_requests_deeper_than_the_eager_depth_still_answer() -> None:
    bus = EventBus()
    address = unique("down")

    @bus.on(address)
    async def down(n: int) -> int:
        return 0 if n == 0 else 1 + await bus.request(address, n - 1)

    async with bus:
        assert await bus.request(address, 3 * eager.MAX_DEPTH) == 3 * eager.MAX_DEPTH


async def test_a_handler_runs_in_a_copy_of_the_callers_context() -> None:
    bus = EventBus()
    address = unique("ctx")
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller")

    @bus.on(address)
    async def sets(n: int) -> str:
        seen = var.get()
        var.set("handler")
        return seen

    async with bus:
        assert await bus.request(address, 1) == "caller"
        assert var.get() == "caller"  # what the handler set stayed in its own context
        assert asyncio.current_task() is not None


async def test_the_queued_path_answers_the_same_when_eager_is_off() -> None:
    bus = EventBus()
    bus._direct.eager = False  # noqa: SLF001 - the path 3.11 takes, on any Python
    address = unique("echo")

    @bus.on(address)
    async def echo(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    async with bus:
        flag = turned()
        assert await bus.request(address, 5) == 5
        assert flag[0]
        with pytest.raises(RecipientFailure):
            await bus.request(address, -1)
