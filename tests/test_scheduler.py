"""Scheduled jobs on one bus: triggers, counters, overlap, errors, pause/resume/remove, restart."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from addrbus import ConfigError, EventBus
from addrbus._jobs import Job, at, cron, every

WAIT = 5.0
TICK = 0.05  # the interval of most jobs here, in seconds


def counter_job(bus: EventBus, **options: Any) -> Job:
    """Schedule a job that only counts its runs: a clock to show that time passed."""
    job: Job = bus.schedule(every(TICK).seconds, lambda: None, name=options.pop("name", "clock"), **options)
    return job


def fire_times(trigger: Any, count: int, start: datetime | None = None) -> list[datetime]:
    """Return the next ``count`` fire times of an addrbus trigger."""
    aps = trigger.build()
    now = start or datetime.now(UTC)
    times: list[datetime] = []
    previous = None
    for _ in range(count):
        previous = aps.get_next_fire_time(previous, now)
        times.append(previous)
        now = previous + timedelta(microseconds=1)
    return times


# -- running -----------------------------------------------------------------------


async def test_an_async_job_runs_every_interval(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    times: list[float] = []
    done = asyncio.Event()

    @bus.schedule(every(0.1).seconds)
    async def tick() -> None:
        times.append(time.monotonic())
        if len(times) == 4:
            done.set()

    started = time.monotonic()
    await bus.start()
    await asyncio.wait_for(done.wait(), WAIT)
    assert times[0] - started >= 0.09  # the first run is one interval after start
    assert 0.08 < (times[-1] - times[0]) / (len(times) - 1) < 0.3, times
    assert tick.job.runs >= 4 and tick.job.failures == 0


async def test_a_sync_job_runs_in_a_worker_thread(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    loop = asyncio.get_running_loop()
    threads: list[int] = []
    ran = asyncio.Event()

    def work() -> None:
        threads.append(threading.get_ident())
        loop.call_soon_threadsafe(ran.set)

    job = bus.schedule(every(TICK).seconds, work)
    await bus.start()
    await asyncio.wait_for(ran.wait(), WAIT)
    assert threads[0] != threading.get_ident()
    await job.wait(runs=1)


async def test_a_fractional_interval_counts_from_start(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    ran = asyncio.Event()

    async def run() -> None:
        ran.set()

    job = bus.schedule(every(0.25).seconds, run)
    assert job.next_run_time is None  # not started yet
    started = datetime.now(UTC)
    async with bus:
        next_run = job.next_run_time
        assert next_run is not None and next_run.tzinfo is not None
        assert timedelta(seconds=0.2) < next_run - started < timedelta(seconds=0.5)
        await asyncio.wait_for(ran.wait(), WAIT)
    assert job.next_run_time is None


async def test_a_slow_job_never_overlaps_and_skips_are_counted(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    gate = asyncio.Event()
    started = asyncio.Event()
    active = peak = 0

    @bus.schedule(every(TICK).seconds)
    async def slow() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        started.set()
        try:
            await gate.wait()
        finally:
            active -= 1

    await bus.start()
    await asyncio.wait_for(started.wait(), WAIT)
    await slow.job.wait(skipped=3)  # occurrences came and went while it ran
    assert slow.job.runs == 0
    gate.set()
    await slow.job.wait(runs=3)
    assert peak == 1


async def test_a_job_that_raises_is_logged_and_runs_again(
    make_bus: Callable[..., EventBus], caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus()
    caplog.set_level(logging.ERROR, logger="addrbus._scheduler")

    def broken() -> None:
        raise RuntimeError("broken job")

    job = bus.schedule(every(TICK).seconds, broken)
    await bus.start()
    await job.wait(failures=3)
    assert job.runs >= job.failures >= 3
    records = [r for r in caplog.records if r.name == "addrbus._scheduler" and "broken" in r.getMessage()]
    assert records and records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


async def test_the_return_value_is_discarded(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    ran = asyncio.Event()

    async def answer() -> int:
        ran.set()
        return 42

    job = bus.schedule(every(TICK).seconds, answer)
    await bus.start()
    await asyncio.wait_for(ran.wait(), WAIT)
    await job.wait(runs=1)
    assert job.failures == 0


async def test_jitter_keeps_each_gap_between_the_bounds(make_bus: Callable[..., EventBus]) -> None:
    trigger = every(2).to(5).minutes
    assert repr(trigger) == "every(2).to(5).minutes"
    times = fire_times(trigger, 50)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(120 <= gap <= 300 for gap in gaps) and max(gaps) - min(gaps) > 30
    first = (times[0] - datetime.now(UTC)).total_seconds()
    assert 110 < first <= 300  # the first run too waits one random interval

    bus = make_bus()
    job = bus.schedule(every(0.02).to(0.06).seconds, lambda: None, name="jittery")
    await bus.start()
    await job.wait(runs=3)


# -- registering -------------------------------------------------------------------


async def test_decorator_returns_the_function_and_call_returns_the_job(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    def hourly() -> None: ...

    decorated = bus.schedule(every(1).hour)(hourly)
    assert decorated is hourly
    assert isinstance(hourly.job, Job)
    assert hourly.job.name.endswith("hourly")
    job = bus.schedule(every(2).hours, hourly, name="again")
    assert isinstance(job, Job) and job.name == "again"
    assert [j.name for j in bus.jobs()] == [hourly.job.name, "again"]


async def test_the_default_name_is_the_qualified_name(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    class Tasks:
        @staticmethod
        def cleanup() -> None: ...

    job = bus.schedule(every(5).minutes, Tasks.cleanup)
    assert job.name == Tasks.cleanup.__qualname__
    with pytest.raises(ConfigError, match="already scheduled"):
        bus.schedule(every(10).minutes, Tasks.cleanup)
    bus.schedule(every(10).minutes, Tasks.cleanup, name="cleanup-2")


async def test_jobs_before_start_have_no_next_run_time(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    assert bus.jobs() == []
    job = bus.schedule(every(10).minutes, lambda: None, name="j")
    assert bus.jobs() == [job]
    assert job.next_run_time is None and not job.paused and not job.singleton
    assert (job.runs, job.failures, job.skipped) == (0, 0, 0)


async def test_a_job_added_after_start_runs(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    await bus.start()
    ran = asyncio.Event()

    async def late() -> None:
        ran.set()

    bus.schedule(every(TICK).seconds, late)
    await asyncio.wait_for(ran.wait(), WAIT)


async def test_a_restarted_bus_runs_its_jobs_again(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    job = counter_job(bus)
    for rounds in (1, 2, 3):
        async with bus:
            assert job.next_run_time is not None
            await job.wait(runs=2 * rounds)
        assert job.next_run_time is None


async def test_stop_waits_for_a_run_then_cancels_it(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus(stop_timeout=0.2)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = bus.schedule(every(TICK).seconds, forever)
    await bus.start()
    await asyncio.wait_for(started.wait(), WAIT)
    t0 = time.monotonic()
    await bus.stop()
    assert cancelled.is_set() and 0.15 < time.monotonic() - t0 < 2.0
    assert job.runs == 0


# -- pause, resume, remove -----------------------------------------------------------


async def test_pause_and_resume(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    clock = counter_job(bus)
    job = counter_job(bus, name="paused")
    await bus.start()
    await job.wait(runs=1)
    job.pause()
    job.pause()  # twice is fine
    assert job.paused and job.next_run_time is None
    runs, ticks = job.runs, clock.runs
    await clock.wait(runs=ticks + 4)
    assert job.runs == runs
    job.resume()
    assert not job.paused and job.next_run_time is not None
    await job.wait(runs=runs + 2)


async def test_a_job_paused_before_start_stays_paused(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    clock = counter_job(bus)
    job = counter_job(bus, name="paused")
    job.pause()
    async with bus:
        await clock.wait(runs=4)
        assert job.runs == 0 and job.next_run_time is None
        job.resume()
        await job.wait(runs=1)


async def test_remove(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    clock = counter_job(bus)
    job = counter_job(bus, name="removed")
    await bus.start()
    await job.wait(runs=1)
    job.remove()
    job.remove()  # twice is fine
    assert bus.jobs() == [clock] and job.next_run_time is None
    runs, ticks = job.runs, clock.runs
    await clock.wait(runs=ticks + 4)
    assert job.runs == runs
    job.resume()  # a removed job stays removed
    assert bus.jobs() == [clock]
    again = counter_job(bus, name="removed")  # the name is free again
    await again.wait(runs=1)


# -- cron --------------------------------------------------------------------------


def test_cron_every_five_minutes() -> None:
    times = fire_times(cron("*/5 * * * *"), 4)
    assert all(t.minute % 5 == 0 and t.second == 0 for t in times)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(times, times[1:], strict=False))


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("0 9 * * 0", {6}),  # crontab's 0 is Sunday (Python's weekday 6)
        ("0 9 * * 7", {6}),
        ("0 9 * * 1-5", {0, 1, 2, 3, 4}),
        ("0 9 * * mon-fri", {0, 1, 2, 3, 4}),
        ("0 9 * * */2", {6, 1, 3, 5}),  # Sun, Tue, Thu, Sat
        ("0 9 * * 5-7", {4, 5, 6}),
        ("0 9 * * SAT,sun", {5, 6}),
    ],
)
def test_cron_weekdays_count_from_sunday(expression: str, weekdays: set[int]) -> None:
    times = fire_times(cron(expression, timezone="UTC"), 21)
    assert {t.weekday() for t in times} == weekdays
    assert all((t.hour, t.minute) == (9, 0) for t in times)


def test_cron_day_of_month_or_weekday() -> None:
    # As in crontab: with both restricted, either one matching is enough.
    times = fire_times(cron("0 0 13 * 5", timezone="UTC"), 40, datetime(2026, 1, 1, tzinfo=UTC))
    assert all(t.day == 13 or t.weekday() == 4 for t in times)
    assert any(t.day == 13 and t.weekday() != 4 for t in times)
    assert any(t.day != 13 for t in times)


def test_cron_aliases() -> None:
    daily = fire_times(cron("@daily", timezone="UTC"), 2)
    assert all((t.hour, t.minute) == (0, 0) for t in daily)
    assert fire_times(cron("@hourly"), 1)[0].minute == 0


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "* * * * * *", "61 * * * *", "* 24 * * *", "* * 32 * *", "* * * 13 *", "* * * * 8",
     "* * * * 3-1", "* * * * */0", "* * * * mon-xyz", "x y z a b", "", "@fortnightly"],
)  # fmt: skip
def test_a_bad_cron_expression_is_a_config_error(expression: str) -> None:
    with pytest.raises(ConfigError, match="cron"):
        cron(expression)


def test_cron_takes_a_string() -> None:
    with pytest.raises(ConfigError):
        cron(5)  # type: ignore[arg-type]


async def test_a_cron_job_lists_its_next_run_time(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    job = bus.schedule(cron("*/5 * * * *"), lambda: None, name="five")
    async with bus:
        next_run = job.next_run_time
        assert next_run is not None and next_run.minute % 5 == 0 and next_run.second == 0
        assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(minutes=5)


# -- at ----------------------------------------------------------------------------


async def test_at_runs_once_then_the_job_is_gone(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    clock = counter_job(bus)
    when = datetime.now() + timedelta(seconds=0.15)  # naive: local time
    job = bus.schedule(at(when), lambda: None, name="once")
    async with bus:
        assert job.next_run_time == when.astimezone()
        await job.wait(runs=1)
        await clock.wait(runs=4)
        assert job.runs == 1 and bus.jobs() == [clock] and job.next_run_time is None
    async with bus:  # a restart does not run it again
        await clock.wait(runs=8)
        assert job.runs == 1


async def test_at_a_time_passed_while_stopped_runs_at_start(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    job = bus.schedule(at(datetime.now(UTC) + timedelta(seconds=0.05)), lambda: None, name="late")
    await asyncio.sleep(0.1)  # not a synchronisation: that moment must pass while the bus is stopped
    async with bus:
        await job.wait(runs=1)


def test_at_in_the_past_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="past"):
        at(datetime.now() - timedelta(seconds=1))
    with pytest.raises(ConfigError, match="datetime"):
        at("2030-01-01T00:00:00")  # type: ignore[arg-type]


# -- bad triggers ------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0, -1, float("inf"), float("nan"), "5", True, None])
def test_every_takes_a_positive_number(interval: Any) -> None:
    with pytest.raises(ConfigError, match="positive"):
        every(interval)


def test_every_spellings() -> None:
    assert repr(every(10).minutes) == "every(10).minutes"
    assert repr(every().second) == "every(1).seconds"
    assert repr(every(1).day) == repr(every(1).days)
    with pytest.raises(ConfigError, match=r"\.minutes"):
        every(2).minute  # noqa: B018
    with pytest.raises(ConfigError, match="smaller"):
        every(5).to(2)
    with pytest.raises(ConfigError, match="before the unit"):
        every(1).seconds.to(2)
    with pytest.raises(ConfigError, match="already"):
        every(1).seconds.minutes  # noqa: B018


async def test_bad_triggers_fail_at_schedule(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    with pytest.raises(ConfigError, match="unit"):
        bus.schedule(every(5), lambda: None)
    with pytest.raises(ConfigError, match="trigger"):
        bus.schedule("every 5 minutes", lambda: None)
    with pytest.raises(ConfigError, match="callable"):
        bus.schedule(every(5).minutes, 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        bus.schedule(every(5).minutes, lambda: None, name="")
    assert bus.jobs() == []


async def test_without_apscheduler_the_error_says_what_to_install(
    make_bus: Callable[..., EventBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = make_bus()
    monkeypatch.setitem(sys.modules, "apscheduler", None)
    with pytest.raises(ConfigError, match=r"pip install 'addrbus\[scheduler\]'"):
        bus.schedule(every(5).minutes, lambda: None)
    with pytest.raises(ConfigError, match=r"pip install 'addrbus\[scheduler\]'"):
        cron("* * * * *")
    assert bus.jobs() == []


def test_import_addrbus_does_not_import_apscheduler() -> None:
    code = (
        "import sys\n"
        "import addrbus, addrbus._jobs\n"
        "from addrbus._jobs import at, every\n"
        "assert not [m for m in sys.modules if m.startswith('apscheduler')]\n"
        "sys.modules['apscheduler'] = None\n"
        "addrbus.EventBus().jobs(), every(5).minutes\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
