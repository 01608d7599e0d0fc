"""Scenario 4: one sender, 10,000 concurrent publishes: in order on memory and redis; udp counts reorders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.conftest import unique
from tests.reliability._measure import Clock, Record, Scale, reorders, time_limit
from tests.reliability.conftest import Net

COUNT = 10_000


@time_limit(short=60, full=180)
async def test_concurrent_publishes_from_one_sender_arrive_in_order(
    net: Net, record: Callable[..., Record], scale: Scale
) -> None:
    rounds = scale.pick(1, 5)
    address = unique("order")
    receiver, sender = net.bus(), net.bus()
    got: list[int] = []

    @receiver.on(address, max_queue=COUNT * rounds)
    async def take(n: int) -> None:
        got.append(n)

    await receiver.start()
    await sender.start()
    await sender.wait_for_handlers(address, 1, timeout=20.0)
    rec = record("4-publish-order", net.kind, publishes=COUNT, rounds=rounds, concurrent=True)

    clock = Clock()
    errors = 0
    for r in range(rounds):
        base = r * COUNT
        results = await asyncio.gather(*(sender.publish(address, base + i) for i in range(COUNT)),
                                       return_exceptions=True)
        errors += sum(1 for x in results if isinstance(x, BaseException))
        # Wait until this round is in, or until nothing more comes for a second (udp may lose some).
        last, quiet = len(got), 0
        for _ in range(300):
            if len(got) >= base + COUNT or quiet >= 20:
                break
            await asyncio.sleep(0.05)
            quiet = quiet + 1 if len(got) == last else 0
            last = len(got)
    rec.seconds = round(clock(), 2)

    sent = COUNT * rounds
    distinct = set(got)
    rec.sent, rec.ok = sent, len(distinct)
    rec.lost = sent - len(distinct)
    rec.duplicates = len(got) - len(distinct)
    rec.reorders = reorders(got)
    stats = receiver.stats()
    rec.extra.update(publish_errors=errors, kernel_drops=stats.get("transport.kernel_drops"),
                     dropped={k: v for k, v in stats.items() if k.startswith("dropped.")})

    rec.expect("publish_errors", errors, "==", 0)
    rec.expect("duplicates", rec.duplicates, "==", 0)
    if net.kind != "udp":
        rec.expect("lost", rec.lost, "==", 0)
        rec.expect("reorders", rec.reorders, "==", 0)
    else:
        # Multicast promises no order: the figure is reported, not held to a target.
        rec.expect("reorders_counted", rec.reorders, ">=", 0)
    rec.assert_ok()
