"""Scenario 5: ``send`` to an address with three consumer processes: each message handled exactly once.

On udp:// and redis:// the consumers are three processes (``_peer.py
consume``); on memory:// they are three buses on one in-process hub.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from addrbus import EventBus
from tests.conftest import unique
from tests.reliability._measure import Clock, Record, Scale, time_limit
from tests.reliability._procs import peers, start
from tests.reliability.conftest import Net

CONSUMERS = 3


def consume_here(bus: EventBus, address: str, index: int) -> None:
    """Register what ``_peer.py consume`` registers, on ``bus``."""
    handled: list[int] = []

    @bus.on(address, max_queue=100_000)
    async def take(n: int) -> None:
        handled.append(n)

    @bus.on(f"{address}.report.{index}")
    async def report() -> dict[str, Any]:
        return {"ids": handled, "stats": bus.stats()}


@time_limit(short=60, full=180)
async def test_sends_to_three_consumers_are_each_handled_once(
    net: Net, record: Callable[..., Record], scale: Scale
) -> None:
    count = scale.pick(900, 3_000)
    address = unique("work")
    client = net.bus()
    rec = record("5-send-exactly-once", net.kind, sends=count, consumers=CONSUMERS,
                 consumer="in-process buses" if net.kind == "memory" else "own processes")
    async with peers() as started:
        if net.kind == "memory":
            for k in range(CONSUMERS):
                bus = net.bus()
                consume_here(bus, address, k)
                await bus.start()
        else:
            await asyncio.gather(*(start(started, "consume", net.url(), net.namespace, address, f"index={k}")
                                   for k in range(CONSUMERS)))
        await client.start()
        await client.wait_for_handlers(address, CONSUMERS, timeout=20.0)

        clock = Clock()
        errors = 0
        for i in range(count):
            try:
                await client.send(address, i)
            except Exception:
                errors += 1
        # Ask each consumer what it handled, until all is in (bounded: 5 s).
        reports: list[dict[str, Any]] = []
        for _ in range(50):
            reports = [await client.request(f"{address}.report.{k}", timeout=5.0) for k in range(CONSUMERS)]
            if sum(len(r["ids"]) for r in reports) >= count:
                break
            await asyncio.sleep(0.1)
        rec.seconds = round(clock(), 2)

    times = collections.Counter(i for r in reports for i in r["ids"])
    shares = [len(r["ids"]) for r in reports]
    rec.sent, rec.ok = count, sum(1 for i in range(count) if times[i] == 1)
    rec.lost = sum(1 for i in range(count) if times[i] == 0)
    rec.duplicates = sum(n - 1 for n in times.values() if n > 1)
    rec.extra.update(send_errors=errors, shares=shares, strays=sum(1 for i in times if not 0 <= i < count),
                     consumer_kernel_drops=[r["stats"].get("transport.kernel_drops") for r in reports])

    rec.expect("send_errors", errors, "==", 0)
    rec.expect("handled_exactly_once", rec.ok, "==", count)
    rec.expect("lost", rec.lost, "==", 0)
    rec.expect("duplicates", rec.duplicates, "==", 0)
    rec.expect("every_consumer_used", min(shares), ">", 0)
    rec.assert_ok()
