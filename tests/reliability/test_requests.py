"""Scenario 1: 10,000 concurrent requests to an echo handler lose nothing and leak nothing.

On udp:// and redis:// the echo handler runs in its own process, as a service
would (1); a second case (1b) keeps both ends on one event loop, where the
requester's sending competes with the handler's receiving for the same CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from addrbus import EventBus
from tests.conftest import unique
from tests.reliability._measure import Clock, MemoryGrowth, Record, Scale, settle, time_limit
from tests.reliability._procs import peers, start
from tests.reliability._requests import Outcomes, fire
from tests.reliability.conftest import Net

COUNT = 10_000


async def measure(rec: Record, client: EventBus, address: str, rounds: int, timeout: float) -> None:
    """Fire ``rounds`` bursts of COUNT concurrent requests and check every outcome."""
    await settle()
    tasks_before = len(asyncio.all_tasks())
    clock = Clock()
    growth = MemoryGrowth(trace=False)
    total = Outcomes()
    for n in range(rounds):
        if n == 1:
            growth.begin()  # the first round is the warm-up
        total.add(await fire(
            lambda i: client.request(address, {"i": i}, timeout=timeout),
            COUNT,
            timeout,
            lambda i, reply: reply == {"i": i},
        ))
    rec.seconds = round(clock(), 2)
    total.fill(rec)
    if rounds > 1:
        growth.end()
        rec.rss_growth_mb = growth.rss_mb
        rec.expect("rss_growth_mb", growth.rss_mb, "<", 10)

    # Runner tasks finish on their next turns: wait (bounded) for the count to come back.
    tasks_after = len(asyncio.all_tasks())
    for _ in range(200):
        if tasks_after <= tasks_before:
            break
        await asyncio.sleep(0.01)
        tasks_after = len(asyncio.all_tasks())
    stats = client.stats()
    pending = stats["pending_requests"]
    rec.extra.update(tasks_before=tasks_before, tasks_after=tasks_after, pending_after=pending,
                     requests_per_s=round(total.sent / max(rec.seconds, 1e-9)),
                     kernel_drops=stats.get("transport.kernel_drops"))

    rec.expect("ok", total.ok, "==", total.sent)
    rec.expect("lost", rec.lost, "==", 0)
    rec.expect("mis_correlated", total.mis_correlated, "==", 0)
    rec.expect("resolutions", total.resolutions, "==", total.sent)
    rec.expect("pending_after", pending, "==", 0)
    rec.expect("task_growth", tasks_after - tasks_before, "<=", 0)
    rec.assert_ok()


@time_limit(short=60, full=300)
async def test_concurrent_requests_to_an_echo_handler(
    net: Net, record: Callable[..., Record], scale: Scale
) -> None:
    rounds = scale.pick(1, 10)  # soak: again and again, to show that nothing piles up
    timeout = 10.0
    address = unique("echo")
    client = net.bus()
    rec = record("1-concurrent-requests", net.kind, requests=COUNT, rounds=rounds, timeout=timeout,
                 server="same process" if net.kind == "memory" else "own process")
    async with peers() as started:
        if net.kind == "memory":
            server = net.bus()

            # All requests land in one loop turn, before the handler runs once: the
            # backlog must hold them all, or the overflow would answer "Overloaded".
            @server.on(address, max_queue=COUNT)
            async def echo(body: Any) -> Any:
                return body

            await server.start()
        else:
            await start(started, "echo", net.url(), net.namespace, address, f"max_queue={COUNT}")
        await client.start()
        await client.wait_for_handlers(address, 1, timeout=20.0)
        await measure(rec, client, address, rounds, timeout)


@time_limit(short=60, full=300)
@pytest.mark.parametrize("net", ["udp", "redis"], indirect=True)
async def test_concurrent_requests_with_both_ends_on_one_loop(
    net: Net, record: Callable[..., Record], scale: Scale
) -> None:
    rounds = scale.pick(1, 3)
    timeout = 10.0
    address = unique("echo")
    server, client = net.bus(), net.bus()

    @server.on(address, max_queue=COUNT)
    async def echo(body: Any) -> Any:
        return body

    rec = record("1b-requests-one-loop", net.kind, requests=COUNT, rounds=rounds, timeout=timeout,
                 server="same event loop")
    await server.start()
    await client.start()
    await client.wait_for_handlers(address, 1, timeout=20.0)
    await measure(rec, client, address, rounds, timeout)
    rec.extra["server_kernel_drops"] = server.stats().get("transport.kernel_drops")
