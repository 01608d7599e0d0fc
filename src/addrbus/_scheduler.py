"""Scheduled jobs on APScheduler 3: ``every(10).minutes``, ``cron("*/5 * * * *")``, ``at(when)``.

The only module that imports ``apscheduler``, and only once a job is scheduled,
so ``import addrbus`` works without it. Each ``start()`` builds a fresh
``AsyncIOScheduler`` over a ``MemoryJobStore`` (nothing is pickled): that is
what lets a stopped bus start again. Singleton jobs are decided from
membership, at each occurrence, on each node (see docs/scheduling.md).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from datetime import datetime, tzinfo
from importlib import import_module
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from ._exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus
    from ._core.registration import Registration

logger = logging.getLogger(__name__)
F = TypeVar("F", bound="Callable[..., Any]")

JOB_ADDRESS_PREFIX = "_addrbus.job."
_MAX_NAME = 200
_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0}
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}  # fmt: skip


def _aps(module: str) -> Any:
    """Import ``apscheduler.<module>``, or say how to install it."""
    try:
        # The top package first: if it is missing (or blocked), a cached submodule must not hide that.
        import_module("apscheduler")
        return import_module(f"apscheduler.{module}")
    except ImportError as exc:
        raise ConfigError("scheduled jobs need APScheduler 3: pip install 'addrbus[scheduler]'") from exc


class Trigger:
    """When a job runs; build one with :func:`every`, :func:`cron` or :func:`at`."""

    once = False  # a one-shot trigger: its job is retired after its run

    def build(self) -> Any:
        """Return a fresh APScheduler trigger (interval triggers count from now)."""
        raise NotImplementedError


class _Unit:
    """The ``.minutes`` of ``every(10).minutes``: a descriptor, so type checkers see an :class:`Every`."""

    def __init__(self, unit: str, singular: bool = False) -> None:
        self.unit, self.singular = unit, singular

    def __get__(self, every: Every | None, owner: type | None = None) -> Every:
        if every is None:
            raise AttributeError(self.unit)
        return every._with(self.unit, self.singular)


class Every(Trigger):
    """``every(n).<unit>``, or ``every(a).to(b).<unit>`` for a random interval in [a, b]."""

    def __init__(self, interval: float, latest: float | None = None, unit: str | None = None) -> None:
        self._interval, self._latest, self._unit = interval, latest, unit

    def __repr__(self) -> str:
        to = "" if self._latest is None else f".to({self._latest:g})"
        return f"every({self._interval:g}){to}" + (f".{self._unit}s" if self._unit else "")

    def to(self, latest: float) -> Every:
        """Pick each interval at random between the first number and ``latest``."""
        if self._unit is not None or self._latest is not None:
            raise ConfigError("write every(a).to(b).minutes: to() comes before the unit")
        if _positive(latest, "every(a).to(b)") < self._interval:
            raise ConfigError(f"every({self._interval:g}).to({latest:g}): b must not be smaller than a")
        return Every(self._interval, latest)

    def _with(self, unit: str, singular: bool) -> Every:
        if self._unit is not None:
            raise ConfigError(f"{self!r} already has a unit")
        if singular and (self._interval != 1 or self._latest is not None):
            raise ConfigError(f"use .{unit}s, not .{unit}, unless the interval is 1")
        return Every(self._interval, self._latest, unit)

    second = _Unit("second", singular=True)
    seconds = _Unit("second")
    minute = _Unit("minute", singular=True)
    minutes = _Unit("minute")
    hour = _Unit("hour", singular=True)
    hours = _Unit("hour")
    day = _Unit("day", singular=True)
    days = _Unit("day")
    week = _Unit("week", singular=True)
    weeks = _Unit("week")

    def build(self) -> Any:
        if self._unit is None:
            raise ConfigError(f"every({self._interval:g}) needs a unit, as in every({self._interval:g}).minutes")
        scale = _UNITS[self._unit]
        low = self._interval * scale
        # APScheduler adds uniform(0, jitter) to each gap: gaps fall in [low, high].
        jitter = None if self._latest is None else self._latest * scale - low
        return _aps("triggers.interval").IntervalTrigger(seconds=low, jitter=jitter or None)


class Cron(Trigger):
    """A standard five-field crontab expression (minute hour day month weekday)."""

    def __init__(self, expression: str, timezone: tzinfo | str | None = None) -> None:
        if not isinstance(expression, str):
            raise ConfigError(f"cron() takes a crontab string, not {type(expression).__name__}")
        self.expression, self.timezone = expression, timezone
        self.build()  # a bad expression fails here, at the line that wrote it

    def __repr__(self) -> str:
        return f"cron({self.expression!r})"

    def build(self) -> Any:
        fields = _CRON_ALIASES.get(self.expression.strip().lower(), self.expression).split()
        if len(fields) != 5:
            raise ConfigError(f"cron({self.expression!r}): expected 5 fields (minute hour day month weekday)")
        minute, hour, day, month, weekday = fields
        cron = _aps("triggers.cron").CronTrigger
        try:
            weekday = _weekdays(weekday)

            def make(day: str, weekday: str) -> Any:
                return cron(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday,
                            timezone=self.timezone)

            if day in ("*", "?") or weekday == "*":
                return make(day, weekday)
            # crontab runs when either the day of month or the weekday matches; APScheduler wants both.
            return _aps("triggers.combining").OrTrigger([make(day, "*"), make("*", weekday)])
        except (ValueError, LookupError) as exc:
            raise ConfigError(f"cron({self.expression!r}): {exc}") from None


def _weekdays(field: str) -> str:
    """Translate a crontab weekday field (0 or 7 = Sunday) to APScheduler's, which counts from Monday."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        low, high = (0, 6) if span == "*" else (_weekday(first), _weekday(last) if last else None)
        high = high if high is not None else (6 if step else low)
        if low > high or (step and not (step.isdigit() and int(step) > 0)):
            raise ValueError(f"bad weekday {part!r}")
        days.update(d % 7 for d in range(low, high + 1, int(step or 1)))
    return ",".join(_DAYS[d] for d in sorted(days))


def _weekday(value: str) -> int:
    if value.isdigit() and int(value) <= 7:
        return int(value)
    if value in _DAYS:
        return _DAYS.index(value)
    raise ValueError(f"bad weekday {value!r}: expected 0-7 or sun-sat")


class At(Trigger):
    """Once, at one moment."""

    once = True

    def __init__(self, when: datetime) -> None:
        if not isinstance(when, datetime):
            raise ConfigError(f"at() takes a datetime, not {type(when).__name__}")
        self.when = when.astimezone()  # a naive datetime is local time
        if self.when <= datetime.now().astimezone():
            raise ConfigError(f"at({when.isoformat()}) is in the past")

    def __repr__(self) -> str:
        return f"at({self.when.isoformat()})"

    def build(self) -> Any:
        return _aps("triggers.date").DateTrigger(run_date=self.when)


def every(interval: float = 1) -> Every:
    """Start an interval trigger: ``every(10).minutes``, ``every(0.5).seconds``, ``every(2).to(5).hours``.

    Raises:
        ConfigError: if ``interval`` is not a positive number.
    """
    return Every(_positive(interval, "every()"))


def cron(expression: str, *, timezone: tzinfo | str | None = None) -> Cron:
    """Return a trigger for a crontab expression, such as ``"*/5 * * * *"`` or ``"@daily"``.

    Args:
        expression: minute hour day-of-month month day-of-week, as crontab(5)
            reads them (weekday 0 or 7 is Sunday).
        timezone: the zone the fields are read in; the local one by default.

    Raises:
        ConfigError: for a bad expression, or if APScheduler is not installed.
    """
    return Cron(expression, timezone)


def at(when: datetime) -> At:
    """Return a one-shot trigger; a naive ``when`` is local time.

    Raises:
        ConfigError: if ``when`` is not a datetime or is already past.
    """
    return At(when)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{what} takes a positive number, not {value!r}")
    return float(value)


async def _nothing() -> None:
    """Stand for a singleton job at its hidden address (nobody sends it anything)."""


class Job:
    """A function scheduled on a bus; ``bus.jobs()`` lists them.

    Counters: ``runs`` (finished runs, ``failures`` among them those that
    raised), ``skipped`` (occurrences dropped because the previous run was
    still going) and ``standby`` (occurrences of a singleton job left to
    another node).
    """

    def __init__(self, scheduler: JobScheduler, name: str, fn: Callable[..., Any], trigger: Trigger,
                 singleton: bool) -> None:
        self.name, self.fn, self.trigger, self.singleton = name, fn, trigger, singleton
        self.runs = self.failures = self.skipped = self.standby = 0
        self._scheduler = scheduler
        self._paused = self._removed = False
        self._registration: Registration | None = None
        self._changed: asyncio.Event | None = None
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an async __call__ counts
        )

    def __repr__(self) -> str:
        state = "removed" if self._removed else "paused" if self._paused else f"next={self.next_run_time}"
        return f"<Job {self.name!r} {self.trigger!r} {state} runs={self.runs}>"

    @property
    def address(self) -> str:
        """Return the hidden address whose consumers are the nodes having this job."""
        return JOB_ADDRESS_PREFIX + self.name

    @property
    def paused(self) -> bool:
        """Tell whether the job is paused."""
        return self._paused

    @property
    def next_run_time(self) -> datetime | None:
        """Return when the job runs next (aware), or None if paused, removed or the bus is stopped."""
        aps_job = self._scheduler._aps_job(self)
        return None if aps_job is None else aps_job.next_run_time

    def pause(self) -> None:
        """Stop running the job until :meth:`resume`; a singleton job is handed to another node."""
        if not (self._removed or self._paused):
            self._paused = True
            if self._scheduler._aps_job(self) is not None:
                self._scheduler._sched.pause_job(self.name)
            self._scheduler._hide(self)

    def resume(self) -> None:
        """Run the job again from its next occurrence (a one-shot job whose time has passed runs now)."""
        if self._paused and not self._removed:
            self._paused = False
            self._scheduler._show(self)
            if self._scheduler._aps_job(self) is not None:
                self._scheduler._sched.resume_job(self.name)

    def remove(self) -> None:
        """Remove the job for good (a run in progress finishes); its name may be used again."""
        if not self._removed:
            self._scheduler._remove(self)

    async def wait(self, *, runs: int = 0, failures: int = 0, skipped: int = 0, standby: int = 0,
                   timeout: float = 10.0) -> None:
        """Wait until each counter has reached at least the value given (for tests, instead of sleeping).

        Raises:
            TimeoutError: if that did not happen within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self.runs < runs or self.failures < failures or self.skipped < skipped or self.standby < standby:
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    def _count(self, *counters: str) -> None:
        for counter in counters:
            setattr(self, counter, getattr(self, counter) + 1)
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


class JobScheduler:
    """The jobs of one bus, on an APScheduler ``AsyncIOScheduler`` that lives while the bus runs."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._jobs: dict[str, Job] = {}
        self._sched: Any = None
        self._generation = 0  # a scheduler being shut down must not start runs of the next one
        self._runs: set[asyncio.Task[None]] = set()
        self._active = bus.running  # the bus makes this object at the first schedule(), maybe while running

    def add(self, trigger: Any, fn: Callable[..., Any] | None, *, name: str | None,
            singleton: bool) -> Callable[[F], F] | Job:
        """Schedule ``fn`` on ``trigger``; without ``fn``, return a decorator that does.

        Args:
            trigger: from :func:`every`, :func:`cron` or :func:`at`.
            fn: a sync function (run in a worker thread) or an async one.
            name: unique on this bus; the function's qualified name by default.
            singleton: run each occurrence on one node among all having the job.

        Returns:
            The :class:`Job`; as a decorator, the function (its job is ``fn.job``).

        Raises:
            ConfigError: for a bad trigger or name, a name already used, or if
                APScheduler is not installed.
        """
        if not isinstance(trigger, Trigger):
            raise ConfigError(f"expected every(...), cron(...) or at(...) as the trigger, not {trigger!r}")
        trigger.build()  # fail at the line that scheduled it: no unit, no APScheduler
        if fn is not None:
            return self._add(trigger, fn, name, singleton)

        def decorate(fn: F) -> F:
            job = self._add(trigger, fn, name, singleton)
            try:
                fn.job = job  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return fn

        return decorate

    def _add(self, trigger: Trigger, fn: Callable[..., Any], name: str | None, singleton: bool) -> Job:
        if not callable(fn):
            raise ConfigError(f"a job must be callable, not {type(fn).__name__}")
        name = getattr(fn, "__qualname__", None) if name is None else name
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME or not name.isprintable():
            raise ConfigError(f"a job name must be 1 to {_MAX_NAME} printable characters, not {name!r}")
        if name in self._jobs:
            raise ConfigError(f"a job named {name!r} is already scheduled on this bus: pass name=...")
        job = self._jobs[name] = Job(self, name, fn, trigger, singleton)
        self._show(job)
        if self._sched is not None:
            self._submit(job)
        elif self._active:
            self._launch()
        return job

    def jobs(self) -> list[Job]:
        """Return the jobs, in the order they were added."""
        return list(self._jobs.values())

    async def start(self) -> None:
        """Start running the jobs (called at the end of ``bus.start()``)."""
        self._active = True
        self._launch()

    def _launch(self) -> None:
        if self._sched is None:
            self._generation += 1
            store = _aps("jobstores.memory").MemoryJobStore()
            self._sched = _aps("schedulers.asyncio").AsyncIOScheduler(jobstores={"default": store})
            self._sched.add_listener(self._skipped, _aps("events").EVENT_JOB_MAX_INSTANCES)
            self._sched.start()
            for job in self._jobs.values():
                self._submit(job)

    async def stop(self) -> None:
        """Stop running the jobs; wait for runs in progress (``stop_timeout``), then cancel them."""
        sched, self._sched, self._active = self._sched, None, False
        if sched is None:
            return
        self._generation += 1
        sched.pause()  # at once, where shutdown() waits for a later turn of the loop
        runs = self._runs - {asyncio.current_task()}  # a job may stop the bus itself
        if runs:
            _, late = await asyncio.wait(runs, timeout=self._bus._stop_timeout)
            for task in late:
                task.cancel()
            if late:
                logger.warning("cancelled %d job run(s) still going when the bus stopped", len(late))
                await asyncio.wait(late, timeout=1.0)
        sched.shutdown(wait=False)

    def _submit(self, job: Job) -> None:
        paused = {"next_run_time": None} if job._paused else {}
        self._sched.add_job(
            self._fire, job.trigger.build(), args=(job, self._generation), id=job.name, name=job.name,
            max_instances=1, coalesce=True, misfire_grace_time=None, replace_existing=True, **paused,
        )

    def _aps_job(self, job: Job) -> Any:
        return None if self._sched is None or job._removed else self._sched.get_job(job.name)

    def _skipped(self, event: Any) -> None:
        job = self._jobs.get(event.job_id)
        if job is not None:
            job._count("skipped")

    def _show(self, job: Job) -> None:
        if job.singleton and job._registration is None and not job._paused:
            job._registration = self._bus.on(job.address, _nothing)

    def _hide(self, job: Job, delay: float = 0.0) -> None:
        reg, job._registration = job._registration, None
        if reg is not None and delay > 0:
            asyncio.get_running_loop().call_later(delay, reg.unregister)
        elif reg is not None:
            reg.unregister()

    def _remove(self, job: Job, delay: float = 0.0) -> None:
        if self._aps_job(job) is not None:
            self._sched.remove_job(job.name)
        job._removed = True
        if self._jobs.get(job.name) is job:
            del self._jobs[job.name]
        self._hide(job, delay)

    def _leads(self, job: Job) -> bool:
        """Tell whether this node is the live node with the smallest id among those having ``job``."""
        having = [node for node, addresses in self._bus.nodes().items() if addresses.get(job.address, 0) > 0]
        return min(having, default=None) == self._bus.node_id

    async def _fire(self, job: Job, generation: int) -> None:
        """Run one occurrence (APScheduler calls this; max_instances=1 keeps runs from overlapping)."""
        if generation != self._generation or job._removed:
            return
        leads = not job.singleton or self._leads(job)
        if job.trigger.once:
            # Peers fire at the same moment: keep the hidden consumer a while, so that
            # none of them finds this node gone and runs the occurrence again.
            self._remove(job, delay=3 * self._bus._membership.heartbeat)
        if not leads:
            job._count("standby")
            return
        run = asyncio.get_running_loop().create_task(self._run(job), name=f"addrbus job {job.name}")
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        try:
            # wait(), not await: a run cancelled by stop() must not look like an APScheduler job error.
            await asyncio.wait({run})
        finally:
            run.cancel()  # no-op once done; if we are cancelled, the run goes too

    async def _run(self, job: Job) -> None:
        try:
            if job._is_async:
                await job.fn()
            else:
                # abandon_on_cancel: stop() cannot interrupt a thread, but need not wait for it.
                result = await anyio.to_thread.run_sync(job.fn, abandon_on_cancel=True)
                if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                    await result
        except asyncio.CancelledError:
            logger.warning("job %r was cancelled", job.name)
            raise
        except Exception:
            logger.exception("job %r raised", job.name)
            job._count("runs", "failures")
        else:
            job._count("runs")
