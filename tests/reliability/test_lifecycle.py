"""Scenario 6: create → start → stop a bus 1,000 times: no file descriptor, task, memory or warning left.

Each cycle builds a new bus, registers a handler, answers one request, and
stops. A second bus stays up all along, so every cycle is also a node joining
and leaving: its membership table must end with no trace of them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Callable

from addrbus import EventBus
from tests.conftest import unique
from tests.reliability._measure import Clock, LogCounter, MemoryGrowth, Record, Scale, open_fds, settle, time_limit
from tests.reliability.conftest import Net


async def cycle(net: Net, address: str, n: int) -> None:
    """Create, start, use and stop one bus."""
    # A short startup window: udp:// has no way to count who answered hello.
    bus = EventBus(net.url(), namespace=net.namespace, startup_wait=0.01)

    @bus.on(address)
    async def echo(x: int) -> int:
        return x

    await bus.start()
    try:
        assert await bus.request(address, n, timeout=5.0) == n
    finally:
        await bus.stop()


@time_limit(short=60, full=300)
async def test_start_stop_cycles_leak_nothing(net: Net, record: Callable[..., Record], scale: Scale) -> None:
    cycles = scale.pick(200, 1_000)
    address = unique("cycle")
    observer = net.bus()
    await observer.start()
    rec = record("6-start-stop-cycles", net.kind, cycles=cycles)

    await cycle(net, address, -1)  # warm-up: lazy imports, first connections, thread pools
    await settle()
    gc.collect()
    fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())
    growth = MemoryGrowth(trace=True)
    growth.begin()
    clock = Clock()
    with warnings.catch_warnings(record=True) as caught, LogCounter("addrbus", logging.WARNING) as logs:
        warnings.simplefilter("always")
        for n in range(cycles):
            await cycle(net, address, n)
        # Leave-taking is asynchronous on the observer's side: let it land (bounded).
        for _ in range(100):
            if len(observer.nodes()) == 1:
                break
            await asyncio.sleep(0.02)
        await settle()
        gc.collect()  # a socket or transport left open warns when collected
    rec.seconds = round(clock(), 2)
    growth.end()
    fds_after, tasks_after = open_fds(), len(asyncio.all_tasks())

    leaked_fds = sorted(set(fds_after) - set(fds_before)) if len(fds_after) > len(fds_before) else []
    rec.sent = rec.ok = cycles
    rec.rss_growth_mb, rec.tracemalloc_growth_mb = growth.rss_mb, growth.traced_mb
    rec.extra.update(
        raw_rss_growth_mb=growth.raw_rss_mb, tracemalloc_own_mb=growth.tracer_mb,
        fds_before=len(fds_before), fds_after=len(fds_after), leaked_fds=leaked_fds[:10],
        tasks_before=tasks_before, tasks_after=tasks_after, cycles_per_s=round(cycles / rec.seconds, 1),
        warnings=[str(w.message) for w in caught][:10], log_warnings=logs.at_least(logging.WARNING)[:10],
        observer_nodes=len(observer.nodes()),
    )

    rec.expect("fd_growth", len(fds_after) - len(fds_before), "<=", 0)
    rec.expect("task_growth", tasks_after - tasks_before, "<=", 0)
    rec.expect("warnings", len(caught), "==", 0)
    rec.expect("log_warnings", len(logs.at_least(logging.WARNING)), "==", 0)
    rec.expect("observer_knows_only_itself", len(observer.nodes()), "==", 1)
    rec.expect("tracemalloc_growth_mb", growth.traced_mb, "<", 5)
    rec.assert_ok()
