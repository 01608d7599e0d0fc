"""Scenario 9: a job every second for a minute runs 59–61 times, never overlaps; one that raises goes on.

Short runs scale time down (every 0.1 s for 3 s, 29–31 runs). Three jobs run
side by side on one bus: ``tick`` (the count and its jitter), ``flaky``
(raises every other run) and ``slow`` (each run takes 1.5 intervals, so the
scheduler must skip, never overlap).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from addrbus import EventBus
from addrbus._jobs import every
from tests.reliability._measure import Clock, Record, Scale, time_limit


@time_limit(short=30, full=150)
async def test_interval_jobs_keep_time_and_survive_errors(
    make_bus: Callable[..., EventBus], record: Callable[..., Record], scale: Scale
) -> None:
    interval, duration = scale.pick((0.1, 3.0), (1.0, 60.0))
    expected = round(duration / interval)
    bus = make_bus()
    starts: list[float] = []
    running = {"tick": 0, "slow": 0}
    overlap = {"tick": 0, "slow": 0}
    flaky_calls = 0

    async def tick() -> None:
        starts.append(time.monotonic())
        running["tick"] += 1
        overlap["tick"] = max(overlap["tick"], running["tick"])
        try:
            await asyncio.sleep(interval * 0.3)
        finally:
            running["tick"] -= 1

    async def flaky() -> None:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls % 2:
            raise RuntimeError(f"flaky run {flaky_calls} fails on purpose")

    async def slow() -> None:
        running["slow"] += 1
        overlap["slow"] = max(overlap["slow"], running["slow"])
        try:
            await asyncio.sleep(interval * 1.5)
        finally:
            running["slow"] -= 1

    jobs = {name: bus.schedule(every(interval).seconds, fn, name=name)
            for name, fn in (("tick", tick), ("flaky", flaky), ("slow", slow))}
    rec = record("9-scheduler", "memory", interval=interval, duration=duration, expected_runs=expected)
    clock = Clock()
    await bus.start()
    t0 = time.monotonic()
    await asyncio.sleep(duration)  # the scenario *is* time passing: a minute of it under soak
    await bus.stop()
    rec.seconds = round(clock(), 2)

    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    jitter = [abs(g - interval) for g in gaps]
    tick_runs, flaky_job, slow_job = jobs["tick"].runs, jobs["flaky"], jobs["slow"]
    rec.sent, rec.ok = expected, tick_runs
    rec.latencies(jitter)  # here: how far each gap between runs strays from the interval
    rec.extra.update(
        first_run_after_s=round(starts[0] - t0, 3) if starts else None,
        flaky_runs=flaky_job.runs, flaky_failures=flaky_job.failures,
        slow_runs=slow_job.runs, slow_skipped=slow_job.skipped, max_concurrent_runs=dict(overlap),
    )

    rec.expect("tick_runs", tick_runs, ">=", expected - 1)
    rec.expect("tick_runs", tick_runs, "<=", expected + 1)
    rec.expect("tick_overlap", overlap["tick"], "==", 1)
    rec.expect("slow_overlap", overlap["slow"], "==", 1)
    rec.expect("slow_skipped", slow_job.skipped, ">", 0)
    rec.expect("flaky_runs", flaky_job.runs, ">=", expected - 1)
    rec.expect("flaky_failures", flaky_job.failures, "==", (flaky_job.runs + 1) // 2)
    rec.assert_ok()
