"""In-process speed and memory, each figure beside a raw asyncio baseline from the same run.

Run: ``.venv/bin/python benchmarks/inprocess.py`` (``--quick`` for a short run, ``--uvloop``
to run on uvloop). The targets are those of the Python running it: 3.12+ answers a request
whose handler never suspends within the call (eager dispatch).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from _harness import loop_name, run

from addrbus import EventBus, Message, Outgoing


class NoOp:
    """An interceptor with both hooks, doing nothing: what the interceptor seam itself costs."""

    def outbound(self, call: Outgoing) -> None:
        return None

    def inbound(self, message: Message[object]) -> None:
        return None


async def raw_round_trips(requesters: int, count: int) -> float:
    """Requesters put (payload, future) on a queue; a server task sets the result."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def server() -> None:
        while True:
            payload, future = await queue.get()
            future.set_result(payload)

    async def requester(n: int) -> None:
        for i in range(n):
            future = loop.create_future()
            queue.put_nowait((i, future))
            await future

    task = loop.create_task(server())
    per = count // requesters
    start = time.perf_counter()
    await asyncio.gather(*(requester(per) for _ in range(requesters)))
    elapsed = time.perf_counter() - start
    task.cancel()
    return per * requesters / elapsed


async def bus_round_trips(requesters: int, count: int, intercepted: bool = False) -> float:
    bus = EventBus()
    if intercepted:
        bus.add_interceptor(NoOp())

    @bus.on("echo")
    async def echo(body: int) -> int:
        return body

    async with bus:
        async def requester(n: int) -> None:
            for i in range(n):
                await bus.request("echo", i)

        per = count // requesters
        start = time.perf_counter()
        await asyncio.gather(*(requester(per) for _ in range(requesters)))
        elapsed = time.perf_counter() - start
    return per * requesters / elapsed


async def raw_fanout(listeners: int, count: int) -> float:
    """A loop awaiting ``listeners`` async callbacks per message."""
    received = [0]

    async def callback(body: int) -> None:
        received[0] += 1

    callbacks = [callback] * listeners
    start = time.perf_counter()
    for i in range(count):
        for cb in callbacks:
            await cb(i)
    elapsed = time.perf_counter() - start
    return received[0] / elapsed


async def bus_fanout(listeners: int, count: int, intercepted: bool = False) -> float:
    bus = EventBus(max_queue=count + 1)
    if intercepted:
        bus.add_interceptor(NoOp())
    received = [0]
    done = asyncio.Event()
    total = listeners * count

    async def listener(body: int) -> None:
        received[0] += 1
        if received[0] == total:
            done.set()

    for _ in range(listeners):
        bus.on("news", listener)
    async with bus:
        start = time.perf_counter()
        for i in range(count):
            await bus.publish("news", i)
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - start
    return received[0] / elapsed


async def memory_in_flight(count: int) -> float:
    """MB above an idle bus while ``count`` requests are in flight."""
    bus = EventBus(max_queue=count + 1, concurrency=count + 1)
    release = asyncio.Event()
    arrived = [0]
    all_in = asyncio.Event()

    @bus.on("hold")
    async def hold(body: int) -> int:
        arrived[0] += 1
        if arrived[0] == count:
            all_in.set()
        await release.wait()
        return body

    async with bus:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.ensure_future(bus.request("hold", i, timeout=60)) for i in range(count)]
        await asyncio.wait_for(all_in.wait(), 60)
        peak = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        release.set()
        await asyncio.gather(*tasks)
    return (peak - base) / 1e6


async def memory_idle_addresses(count: int) -> float:
    """MB for an idle bus with ``count`` registered addresses."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    bus = EventBus()

    async def handler(body: object) -> None:
        return None

    for i in range(count):
        bus.on(f"address.{i}", handler)
    async with bus:
        used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (used - base) / 1e6


async def best_of(runs: int, fn: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await fn() for _ in range(runs)])


async def main(quick: bool) -> int:
    n = 20_000 if quick else 100_000
    runs = 3 if quick else 5
    rows: list[tuple[str, float, float, float]] = []

    async def pair(name: str, bus_fn: Callable[[], Awaitable[float]], raw_fn: Callable[[], Awaitable[float]],
                   target: float) -> None:
        # Interleave so both see the same machine state.
        bus_v, raw_v = [], []
        for _ in range(runs):
            raw_v.append(await raw_fn())
            bus_v.append(await bus_fn())
        rows.append((name, statistics.median(bus_v), statistics.median(raw_v), target))

    # The targets of each Python (3.12+ dispatches eagerly: a handler that never suspends answers in the call).
    one, hundred, fanout = (1.0, 0.8, 0.3) if sys.version_info >= (3, 12) else (0.6, 0.55, 0.25)
    await pair("request/reply, 1 requester (round trips/s)",
               lambda: bus_round_trips(1, n), lambda: raw_round_trips(1, n), one)
    await pair("request/reply, 100 requesters (round trips/s)",
               lambda: bus_round_trips(100, n), lambda: raw_round_trips(100, n), hundred)
    await pair("publish 1 -> 10 listeners (deliveries/s)",
               lambda: bus_fanout(10, n // 10 * 2), lambda: raw_fanout(10, n // 10 * 2), fanout)
    # What one no-op interceptor costs: the bus with it beside the bus without it, same run.
    costs = []
    for name, plain, hooked in (
        ("request/reply, 1 requester", lambda: bus_round_trips(1, n), lambda: bus_round_trips(1, n, True)),
        ("publish 1 -> 10 listeners", lambda: bus_fanout(10, n // 10 * 2),
         lambda: bus_fanout(10, n // 10 * 2, True)),
    ):
        plain_v, hooked_v = [], []
        for _ in range(runs):
            plain_v.append(await plain())
            hooked_v.append(await hooked())
        costs.append((name, statistics.median(hooked_v), statistics.median(plain_v)))
    failed = 0
    print(f"Python {platform.python_version()}, {loop_name()} loop")
    print(f"{'figure':<48} {'addrbus':>12} {'raw':>12} {'ratio':>7} {'target':>7}")
    for name, bus_v, raw_v, target in rows:
        ratio = bus_v / raw_v
        ok = ratio >= target
        failed += not ok
        print(f"{name:<48} {bus_v:>12,.0f} {raw_v:>12,.0f} {ratio:>7.2f} {'>=' + str(target):>7} "
              f"{'ok' if ok else 'SHORT'}")
    print(f"{'one no-op interceptor':<48} {'with':>12} {'without':>12} {'ratio':>7} {'us/msg':>7}")
    for name, hooked_v, plain_v in costs:
        print(f"{name:<48} {hooked_v:>12,.0f} {plain_v:>12,.0f} {hooked_v / plain_v:>7.2f} "
              f"{(1 / hooked_v - 1 / plain_v) * 1e6:>7.2f}")
    in_flight = await memory_in_flight(10_000)
    idle = await memory_idle_addresses(1_000)
    print(f"{'memory, 10,000 requests in flight (MB)':<48} {in_flight:>12.1f} {'':>12} {'':>7} {'<50':>7} "
          f"{'ok' if in_flight < 50 else 'SHORT'}")
    print(f"{'memory, idle bus with 1,000 addresses (MB)':<48} {idle:>12.2f} {'':>12} {'':>7} {'<5':>7} "
          f"{'ok' if idle < 5 else 'SHORT'}")
    failed += (in_flight >= 50) + (idle >= 5)
    return failed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages and runs")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (pip install 'addrbus[speed]')")
    args = parser.parse_args()
    raise SystemExit(1 if run(main(args.quick), args.uvloop) else 0)
