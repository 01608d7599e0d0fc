"""The bus over Redis under real faults: every request resolves by its deadline, and traffic recovers.

Each test runs two real buses (or a bus and a helper process) on a private
redis-server (``fault_redis``, one per test, free to kill or freeze) with a
background loop of short-timeout requests (:class:`Traffic`) that checks, for
every single request, that it ended with its own reply or an error no later
than its timeout plus :data:`MARGIN`. Waits are on events, futures and routes,
always bounded; the only sleeps are a fault's own duration and the traffic's
pacing.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from addrbus import (
    EventBus,
)
from addrbus.transports.redis import wire
from tests._faults import HEARTBEAT, MARGIN, WAIT, LostFutures, States, Traffic, now, timed, two_buses
from tests.conftest import unique
from tests.fixtures_redis import RedisServer

pytestmark = pytest.mark.redis

SERVICE = Path(__file__).parent / "procs" / "service.py"


async def test_kill_and_restart_during_traffic(fault_redis: RedisServer) -> None:
    async with two_buses(fault_redis.url) as (bus, _, echo, address):
        states = States(bus)
        async with Traffic(bus, address, timeout=0.5) as traffic:
            await traffic.flowing()
            fault_redis.kill()
            await states.wait("disconnected")
            # Down long enough for the peers to drop each other (missed heartbeats).
            await bus.wait_for_handlers(address, 0, exactly=True, timeout=WAIT)
            spawned = now()
            await asyncio.to_thread(fault_redis.restart)  # returns once the new server answers PING
            accepting = now()
            back = await traffic.ok_after(accepting, 2.0 + MARGIN)
            await traffic.flowing()
            outcomes = await traffic.check()
        recovered = back - accepting
        assert recovered < 2.0, f"first good round trip {recovered:.2f} s after Redis accepted connections"
        assert outcomes["ok"] > 40 and sum(outcomes.values()) > outcomes["ok"]
        assert [s for s, _ in states.seen] == ["disconnected", "reconnected"]
        echo.assert_no_duplicates()
        print(f"\nkill+restart: first good round trip {recovered:.3f} s after accepting "
              f"({back - spawned:.3f} s after spawn); outcomes {dict(outcomes)}, worst {traffic.worst:.3f} s")


async def test_outage_longer_than_the_timeout(fault_redis: RedisServer) -> None:
    timeout = 0.4  # shorter than the membership's detection (3 x 0.2 s): requests meet their deadline
    async with two_buses(fault_redis.url) as (bus, responder, echo, address):
        echo.gate = asyncio.Event()
        async with Traffic(bus, address, timeout=timeout) as traffic:
            await traffic.flowing()
            # Requests the handler holds: in flight when Redis dies, their replies can never come.
            held = [asyncio.ensure_future(timed(bus.request(address, f"held-{i}", timeout=timeout)))
                    for i in range(5)]
            await echo.arrived(traffic.outcomes["ok"] + 5)
            fault_redis.kill()
            killed = now()
            # The outage lasts at least until every held request is resolved and the routes are gone.
            results = await asyncio.wait_for(asyncio.gather(*held), timeout + MARGIN + 0.1)
            await bus.wait_for_handlers(address, 0, exactly=True, timeout=WAIT)
            failing = traffic.sent
            # Requests during the outage fail fast (disconnected, or nobody known to consume).
            for i in range(20):
                outcome, took = await timed(bus.request(address, f"down-{i}", timeout=timeout))
                assert outcome in {"TransportError", "NoHandlers"} and took < 0.1, (outcome, took)
            down_for = now() - killed
            await asyncio.to_thread(fault_redis.restart)
            accepting = now()
            await bus.wait_for_handlers(address, 1, timeout=2.0 + MARGIN)
            assert await bus.request(address, "after", timeout=2.0) == "after"
            back = await traffic.ok_after(accepting, 2.0 + MARGIN)
            echo.gate.set()  # the held handlers answer now: their replies must go nowhere
            await traffic.flowing()
            outcomes = await traffic.check()
        for outcome, took in results:
            assert outcome in {"RequestTimeout", "RecipientGone"}, outcome
            assert took <= timeout + MARGIN, took
        assert [o for o, _ in results].count("RequestTimeout") >= 1
        assert down_for > timeout and traffic.sent > failing
        assert responder.stats()["pending_requests"] == 0
        echo.assert_no_duplicates()
        print(f"\noutage {down_for:.2f} s > timeout {timeout} s: held requests {results}; "
              f"good again {back - accepting:.3f} s after accepting; outcomes {dict(outcomes)}")


# -- the server hangs ------------------------------------------------------------------------


async def test_sigstop_ten_seconds_degrades_then_recovers_without_duplicates(fault_redis: RedisServer) -> None:
    async with two_buses(fault_redis.url) as (bus, _, echo, address):
        states = States(bus)
        async with Traffic(bus, address, timeout=0.5) as traffic:
            await traffic.flowing()
            fault_redis.pause()
            paused = now()
            try:
                degraded = await states.wait("degraded", 3.0) - paused
                # The fault's duration, not a synchronisation: the traffic keeps meeting its deadlines.
                await asyncio.sleep(10.0 - (now() - paused))
            finally:
                fault_redis.resume()
            resumed = now()
            healthy = await states.wait("reconnected", 5.0) - resumed
            back = await traffic.ok_after(resumed, 5.0)
            await traffic.flowing()
            outcomes = await traffic.check()
        assert degraded < 3.0
        assert [s for s, _ in states.seen] == ["degraded", "reconnected"]
        echo.assert_no_duplicates()
        print(f"\nSIGSTOP 10 s: degraded after {degraded:.2f} s, healthy {healthy:.2f} s and a good round trip "
              f"{back - resumed:.2f} s after SIGCONT; outcomes {dict(outcomes)}, worst {traffic.worst:.3f} s; "
              f"{traffic.unread} request futures left holding an unread error")


async def test_client_pause_write_resolves_in_flight_requests_then_recovers(fault_redis: RedisServer) -> None:
    timeout = 1.0
    async with two_buses(fault_redis.url) as (bus, _, echo, address):
        async with Traffic(bus, address, timeout=timeout) as traffic:
            await traffic.flowing()
            fault_redis.cli("CLIENT", "PAUSE", 5000, "WRITE")
            paused = now()
            # Requests made during the pause all resolve by their deadline (Traffic checks each).
            during = [asyncio.ensure_future(timed(bus.request(address, f"paused-{i}", timeout=timeout)))
                      for i in range(10)]
            results = await asyncio.wait_for(asyncio.gather(*during), timeout + MARGIN + 0.1)
            back = await traffic.ok_after(paused + 5.0, 5.0 + 2.0 + MARGIN)
            await traffic.flowing()
            outcomes = await traffic.check()
        for outcome, took in results:
            assert outcome != "ok" and took <= timeout + MARGIN, (outcome, took)
        recovered = back - (paused + 5.0)
        assert recovered < 2.0
        echo.assert_no_duplicates()
        print(f"\nCLIENT PAUSE 5 s: requests during it {Counter(o for o, _ in results)}; "
              f"good again {recovered:.3f} s after the pause ended; outcomes {dict(outcomes)}")


async def test_client_kill_pubsub_resubscribes_within_a_second(fault_redis: RedisServer) -> None:
    async with two_buses(fault_redis.url) as (bus, _, echo, address):
        async with Traffic(bus, address, timeout=0.5) as traffic:
            await traffic.flowing()
            killed = now()
            assert fault_redis.cli("CLIENT", "KILL", "TYPE", "pubsub") == 2
            back = await traffic.ok_after(killed, 1.0 + MARGIN) - killed
            await traffic.flowing()
            outcomes = await traffic.check()
        assert back < 1.0 + MARGIN
        echo.assert_no_duplicates()
        print(f"\nCLIENT KILL TYPE pubsub: a good round trip {back:.3f} s later; outcomes {dict(outcomes)}")


# -- a consumer dies, a requester gives up ---------------------------------------------------


Hanging = tuple[str, Callable[[], Awaitable[None]], asyncio.subprocess.Process]


@asynccontextmanager
async def hanging_consumer(url: str, namespace: str, address: str) -> AsyncIterator[Hanging]:
    """Run ``tests/procs/service.py hang``: a process whose handler never answers.

    Yields its node id, a coroutine function that waits for its next
    ``handling`` line, and the process.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVICE), "hang", url, namespace, address,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )

    async def expect(keyword: str) -> list[str]:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            for _ in range(1000):  # bounded: the helper prints a few lines only
                line = (await process.stdout.readline()).decode()
                assert line, f"the consumer exited before printing {keyword!r}"
                if line.split(" ")[0] == keyword:
                    return line.split()[1:]
        raise AssertionError(f"the consumer never printed {keyword!r}")

    async def handling() -> None:
        await expect("handling")

    try:
        (node,) = await expect("ready")
        yield node, handling, process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_killed_consumer_process_fails_its_requests_fast(fault_redis: RedisServer) -> None:
    namespace, first, second = unique("ns"), unique("stuck"), unique("stuck")
    timeout = 10.0
    async with (
        hanging_consumer(fault_redis.url, namespace, first) as (_, first_handling, first_proc),
        hanging_consumer(fault_redis.url, namespace, second) as (second_id, second_handling, second_proc),
        EventBus(fault_redis.url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0) as bus,
    ):
        await bus.wait_for_handlers(first, 1, timeout=WAIT)
        await bus.wait_for_handlers(second, 1, timeout=WAIT)
        held_first = [asyncio.ensure_future(timed(bus.request(first, n, timeout=timeout))) for n in range(5)]
        held_second = [asyncio.ensure_future(timed(bus.request(second, n, timeout=timeout))) for n in range(5)]
        for _ in range(5):
            await first_handling()
            await second_handling()

        # A request to a dead node: once Redis has dropped the subscription, PUBLISH to its
        # inbox returns 0, and the bus fails that request and every one the node owed, at once.
        second_proc.kill()  # SIGKILL: no goodbye
        await asyncio.wait_for(second_proc.wait(), WAIT)
        inbox = wire.inbox_channel(wire.channel_prefix(namespace), second_id).decode()
        for _ in range(5000):  # a bounded poll of Redis' own view: at most ~5 s
            if fault_redis.cli("PUBSUB", "NUMSUB", inbox)[1] == 0:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError("Redis kept the dead consumer's subscription")
        fresh, fresh_took = await timed(bus.request(second, 99, timeout=timeout))
        owed_second = await asyncio.wait_for(asyncio.gather(*held_second), 0.1)

        # Nobody asks the other dead node anything: missed heartbeats (3 x 0.2 s) tell.
        first_proc.kill()
        killed = now()
        owed_first = await asyncio.wait_for(asyncio.gather(*held_first), WAIT)
        noticed = now() - killed
        gone, gone_took = await timed(bus.request(first, 100, timeout=timeout))
        assert bus.stats()["pending_requests"] == 0
    # The first to meet the dead inbox tells: this request (RecipientGone), or, when the ring's
    # ping got there first, the table already has no handler (NoHandlers). Either comes at once.
    assert fresh in ("RecipientGone", "NoHandlers") and fresh_took < 0.1, (fresh, fresh_took)
    assert all(outcome == "RecipientGone" for outcome, _ in owed_second + owed_first), owed_second + owed_first
    assert noticed < 2.0, f"the requests it owed resolved {noticed:.2f} s after the kill (timeout {timeout} s)"
    assert gone == "NoHandlers" and gone_took < 0.1
    print(f"\nconsumer SIGKILLed: a new request failed in {fresh_took * 1000:.1f} ms (PUBLISH returned 0) "
          f"with the 5 it owed; a silent one was dropped {noticed:.2f} s after the kill")


async def test_cancelled_requesters_never_receive_or_steal_a_reply(redis_server: RedisServer) -> None:
    async with two_buses(redis_server.url) as (bus, responder, echo, address):
        echo.delay = 0.02
        count = 2000
        rng = random.Random(7)
        bodies = [f"r{i}-{rng.random()}" for i in range(count)]
        tasks = [asyncio.ensure_future(bus.request(address, body, timeout=10.0)) for body in bodies]
        victims = rng.sample(range(count), count // 3)
        for n, index in enumerate(victims):
            tasks[index].cancel()
            if n % 50 == 0:
                await asyncio.sleep(rng.uniform(0, 0.005))  # cancel while replies are arriving
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15.0)
        cancelled = {i for i, task in enumerate(tasks) if task.cancelled()}
        completed = [(bodies[i], task.result()) for i, task in enumerate(tasks) if i not in cancelled]
        assert cancelled and len(completed) > count // 2
        assert all(reply == body for body, reply in completed)
        # And the bus goes on answering each request with its own reply.
        again = await asyncio.gather(*(bus.request(address, f"again-{i}", timeout=10.0) for i in range(200)))
        assert again == [f"again-{i}" for i in range(200)]
        await responder.drain(WAIT)
        assert bus.stats()["pending_requests"] == 0
        late = bus.stats().get("dropped.late_reply", 0)
        echo.assert_no_duplicates()
        print(f"\n{len(cancelled)} of {count} requests cancelled; {len(completed)} completed, each with its own "
              f"reply; {late} late replies dropped")


async def test_ten_thousand_concurrent_requests(redis_server: RedisServer) -> None:
    async with two_buses(redis_server.url) as (bus, responder, echo, address):
        count = 10_000
        loop = asyncio.get_running_loop()
        start = loop.time()
        replies = await asyncio.wait_for(
            asyncio.gather(*(bus.request(address, f"load-{i}", timeout=30.0) for i in range(count))), 60.0
        )
        took = loop.time() - start
        assert replies == [f"load-{i}" for i in range(count)]
        assert bus.stats()["pending_requests"] == 0 and responder.stats()["pending_requests"] == 0
        assert len(echo.runs) == count
        echo.assert_no_duplicates()
        print(f"\n{count} concurrent requests over Redis in {took:.2f} s ({count / took:,.0f}/s)")


async def test_a_request_stuck_past_its_deadline_fails_with_request_timeout(fault_redis: RedisServer) -> None:
    timeout = 0.3
    async with two_buses(fault_redis.url) as (bus, _, _, address):
        lost = LostFutures()
        try:
            fault_redis.cli("CLIENT", "PAUSE", 1500, "WRITE")
            results = await asyncio.wait_for(
                asyncio.gather(*(timed(bus.request(address, f"stuck-{i}", timeout=timeout)) for i in range(50))),
                timeout + MARGIN,
            )
        finally:
            unread = lost.close()
    assert all(took <= timeout + MARGIN for _, took in results)
    assert unread == 0, f"{unread} request futures were left holding an error nobody read"
    assert {outcome for outcome, _ in results} == {"RequestTimeout"}
