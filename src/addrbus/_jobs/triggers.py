"""Triggers on APScheduler 3: ``every(10).minutes``, ``cron("*/5 * * * *")``, ``at(when)``.

The only module that imports ``apscheduler``, and only once a job is scheduled,
so ``import addrbus`` works without it. :func:`start_apscheduler` builds the
fresh ``AsyncIOScheduler`` each ``JobScheduler.start()`` needs, over a
``MemoryJobStore`` (nothing is pickled): that is what lets a stopped bus start
again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, tzinfo
from importlib import import_module
from typing import Any

from .._exceptions import ConfigError

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


def start_apscheduler(on_skipped: Callable[[Any], None]) -> Any:
    """Start a new ``AsyncIOScheduler`` that calls ``on_skipped(event)`` when a run is skipped (max_instances).

    Raises:
        ConfigError: if APScheduler is not installed.
    """
    store = _aps("jobstores.memory").MemoryJobStore()
    sched = _aps("schedulers.asyncio").AsyncIOScheduler(jobstores={"default": store})
    sched.add_listener(on_skipped, _aps("events").EVENT_JOB_MAX_INSTANCES)
    sched.start()
    return sched


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
        if every.unit is not None:
            raise ConfigError(f"{every!r} already has a unit")
        if self.singular and (every.interval != 1 or every.latest is not None):
            raise ConfigError(f"use .{self.unit}s, not .{self.unit}, unless the interval is 1")
        return Every(every.interval, every.latest, self.unit)


class Every(Trigger):
    """``every(n).<unit>``, or ``every(a).to(b).<unit>`` for a random interval in [a, b]."""

    def __init__(self, interval: float, latest: float | None = None, unit: str | None = None) -> None:
        self.interval, self.latest, self.unit = interval, latest, unit

    def __repr__(self) -> str:
        to = "" if self.latest is None else f".to({self.latest:g})"
        return f"every({self.interval:g}){to}" + (f".{self.unit}s" if self.unit else "")

    def to(self, latest: float) -> Every:
        """Pick each interval at random between the first number and ``latest``."""
        if self.unit is not None or self.latest is not None:
            raise ConfigError("write every(a).to(b).minutes: to() comes before the unit")
        if _positive(latest, "every(a).to(b)") < self.interval:
            raise ConfigError(f"every({self.interval:g}).to({latest:g}): b must not be smaller than a")
        return Every(self.interval, latest)

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
        if self.unit is None:
            raise ConfigError(f"every({self.interval:g}) needs a unit, as in every({self.interval:g}).minutes")
        scale = _UNITS[self.unit]
        low = self.interval * scale
        # APScheduler adds uniform(0, jitter) to each gap: gaps fall in [low, high].
        jitter = None if self.latest is None else self.latest * scale - low
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
