"""Scenario 3: a slow consumer fed 1,000 msg/s: bounded queue, exact drop count, one warning per episode.

The consumer is made slow with ``concurrency=1`` and an ``async`` handler that
sleeps 10 ms: it handles at most 100 messages a second. (With the default
concurrency of 64 the same handler would keep up with 1,000 msg/s.) The feed
runs in two episodes with a pause between them long enough for the consumer to
catch up, so the bus must warn exactly twice and say "caught up" twice.
The publisher is a second bus on the same loop; its publish calls must stay
tiny: the bus drops for the slow consumer, it never makes the sender wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tests.conftest import unique
from tests.reliability._measure import Clock, LagMonitor, LogCounter, Record, Scale, percentile, settle, time_limit
from tests.reliability.conftest import Net

RATE = 1_000  # messages a second
WORK = 0.010  # seconds per message
MAX_QUEUE = 100  # the consumer's backlog bound: a second of its work
EPISODES = 2


@time_limit(short=60, full=180)
async def test_a_slow_consumer_drops_exactly_and_never_blocks_the_publisher(
    net: Net, record: Callable[..., Record], scale: Scale
) -> None:
    seconds = scale.pick(2.0, 30.0)  # of feed, over both episodes
    address = unique("slow")
    consumer, publisher = net.bus(), net.bus()
    handled: list[int] = []

    async def crawl(n: int) -> None:
        await asyncio.sleep(WORK)
        handled.append(n)

    reg = consumer.on(address, crawl, concurrency=1, max_queue=MAX_QUEUE)
    await consumer.start()
    await publisher.start()
    await publisher.wait_for_handlers(address, 1, timeout=20.0)
    rec = record("3-slow-consumer", net.kind, rate=RATE, seconds=seconds, work_ms=WORK * 1000,
                 concurrency=1, max_queue=MAX_QUEUE, episodes=EPISODES, handler="async, sleeps 10 ms")

    loop = asyncio.get_running_loop()
    call_times: list[float] = []
    backlog_max = 0
    sent = 0
    lag = LagMonitor(0.01)
    clock = Clock()
    with LogCounter("addrbus") as logs:
        lag.start()
        try:
            for _ in range(EPISODES):
                count = int(RATE * seconds / EPISODES)
                t0 = loop.time()
                for seq in range(count):
                    ahead = t0 + seq / RATE - loop.time()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    before = loop.time()
                    await publisher.publish(address, sent)
                    call_times.append(loop.time() - before)
                    sent += 1
                    backlog_max = max(backlog_max, reg.pending)
                # Between episodes (and at the end) the consumer works off its backlog.
                for _ in range(500):  # at most 5 s, where MAX_QUEUE * WORK = 1 s is enough
                    if reg.pending == 0 and logs.count("caught up") == logs.count("is overflowing"):
                        break
                    await asyncio.sleep(0.01)
            await consumer.drain(timeout=5.0)
            await settle()
        finally:
            await lag.stop()
    rec.seconds = round(clock(), 2)

    stats = consumer.stats()
    dropped = stats.get("dropped.overflow", 0)
    warnings = logs.count("is overflowing", logging.WARNING)
    caught_up = logs.count("caught up")
    p99 = percentile(call_times, 99)
    rec.sent, rec.ok = sent, len(handled)
    rec.lost = sent - len(handled) - dropped  # dropped on purpose are not lost: they are counted
    rec.duplicates = len(handled) - len(set(handled))
    rec.loop_lag_p99_ms = lag.p99_ms()
    rec.latencies(call_times)  # here: how long each publish call took
    rec.extra.update(
        dropped_overflow=dropped, delivered=stats["delivered"], backlog_max=backlog_max,
        overflow_warnings=warnings, caught_up=caught_up,
        publish_call_max_ms=round(max(call_times) * 1000, 3),
        kernel_drops=stats.get("transport.kernel_drops"),
    )

    rec.expect("dropped+delivered", dropped + stats["delivered"], "==", sent)
    rec.expect("handled==delivered", len(handled), "==", stats["delivered"])
    rec.expect("backlog_max", backlog_max, "<=", MAX_QUEUE)
    rec.expect("overflow_warnings", warnings, "==", EPISODES)
    rec.expect("caught_up", caught_up, "==", EPISODES)
    rec.expect("duplicates", rec.duplicates, "==", 0)
    # A publisher that waited for this consumer would spend at least its WORK (10 ms) per call.
    # Under that bound, not a speed target: on a loaded 2-core machine the p99 of a Redis
    # publish call reached 5-7 ms at times, on earlier commits as well.
    rec.expect("publish_call_p99_ms", None if p99 is None else round(p99 * 1000, 3), "<", WORK * 1000)
    rec.expect("publish_call_max_ms", rec.extra["publish_call_max_ms"], "<", 100)
    rec.assert_ok()
