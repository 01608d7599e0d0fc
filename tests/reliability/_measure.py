"""What a reliability scenario measures, and the record it leaves behind.

A :class:`Record` holds the figures of one scenario on one transport and the
checks made on them (value, comparison, target). The test asserts the checks;
``conftest.py`` writes each record as JSON and prints them all as a table.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import operator
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

_PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


def rss() -> int:
    """Return this process's resident set size in bytes (psutil-free: /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


def open_fds() -> list[str]:
    """Return what each open file descriptor of this process points at."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the descriptor listdir itself used, closed since
    return sorted(names)


def percentile(values: list[float], q: float) -> float | None:
    """Return the ``q``-th percentile (nearest rank) of ``values``, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def reorders(sequence: list[int]) -> int:
    """Count the items that arrived after a later-sent one (adjacent inversions)."""
    return sum(1 for a, b in zip(sequence, sequence[1:], strict=False) if b < a)


async def settle(turns: int = 20) -> None:
    """Let the loop run callbacks already due (handler runners, done callbacks)."""
    for _ in range(turns):
        await asyncio.sleep(0)


@dataclass
class Check:
    """One target: ``value op target``."""

    name: str
    value: Any
    op: str
    target: Any
    ok: bool

    def __str__(self) -> str:
        return f"{self.name}={_fmt(self.value)} (want {self.op} {_fmt(self.target)})"


@dataclass
class Record:
    """The figures of one scenario on one transport (None: not measured there)."""

    scenario: str
    transport: str
    mode: str
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    sent: int | None = None
    ok: int | None = None
    timeout: int | None = None
    no_handlers: int | None = None
    failed: int | None = None
    unresolved: int | None = None
    lost: int | None = None
    mis_correlated: int | None = None
    duplicates: int | None = None
    reorders: int | None = None
    late_beyond_timeout_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rss_growth_mb: float | None = None
    tracemalloc_growth_mb: float | None = None
    loop_lag_p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None

    def expect(self, name: str, value: Any, op: str, target: Any) -> bool:
        """Record the check ``value op target`` and return whether it holds (None never does)."""
        ok = value is not None and _OPS[op](value, target)
        self.checks.append(Check(name, value, op, target, ok))
        return ok

    def latencies(self, seconds: list[float]) -> None:
        """Record p50 and p99 of latencies given in seconds."""
        p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
        self.p50_ms = None if p50 is None else round(p50 * 1000, 3)
        self.p99_ms = None if p99 is None else round(p99 * 1000, 3)

    @property
    def breaches(self) -> list[Check]:
        """Return the checks that failed."""
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> bool:
        """Tell whether every check held and the scenario ran to its end."""
        return self.error is None and not self.breaches and bool(self.checks)

    def assert_ok(self) -> None:
        """Fail the test with every breach listed, if any."""
        breaches = self.breaches
        assert not breaches, f"{self.scenario} on {self.transport}: " + "; ".join(map(str, breaches))

    def to_json(self) -> dict[str, Any]:
        """Return the record as plain JSON data."""
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def write(self, directory: Path) -> Path:
        """Write the record as ``SCENARIO-TRANSPORT.json`` under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}-{self.transport}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class LagMonitor:
    """Measure event-loop lag: a ticker that sleeps ``interval`` and notes how late it woke."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self.recording = True

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # bounded by stop(), which every user calls in finally
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            if self.recording:
                self.lags.append(max(0.0, loop.time() - due))

    def start(self) -> None:
        """Start ticking on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="lag-monitor")

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def p99_ms(self) -> float | None:
        """Return the 99th percentile lag in milliseconds."""
        p99 = percentile(self.lags, 99)
        return None if p99 is None else round(p99 * 1000, 3)


class MemoryGrowth:
    """RSS and tracemalloc growth from :meth:`begin` (after warm-up) to :meth:`end`.

    tracemalloc only counts what was allocated after it started, so its figure
    is the net memory the scenario kept since the warm-up: the leak, if any.
    """

    def __init__(self, trace: bool = True) -> None:
        self.trace = trace
        self._rss0 = 0
        self._ours = False
        self.rss_mb: float | None = None
        self.raw_rss_mb: float | None = None
        self.traced_mb: float | None = None
        self.tracer_mb: float | None = None

    def begin(self) -> None:
        """Take the baseline (call it after the warm-up)."""
        gc.collect()
        self._rss0 = rss()
        if self.trace and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._ours = True

    def end(self) -> None:
        """Measure the growth since :meth:`begin`.

        ``rss_mb`` leaves out what tracemalloc itself took to store its traces
        (``tracer_mb``, one per live allocation): that is the harness's memory,
        not the bus's.
        """
        gc.collect()
        grown = rss() - self._rss0
        self.raw_rss_mb = round(grown / MB, 2)
        tracer = 0
        if self._ours:
            self.traced_mb = round(tracemalloc.get_traced_memory()[0] / MB, 2)
            tracer = tracemalloc.get_tracemalloc_memory()
            self.tracer_mb = round(tracer / MB, 2)
            tracemalloc.stop()
            self._ours = False
        self.rss_mb = round((grown - tracer) / MB, 2)


class Clock:
    """Seconds since creation, on the monotonic clock."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


SOAK = os.environ.get("ADDRBUS_SOAK") == "1"
"""``make soak`` sets ADDRBUS_SOAK=1: full-length scenarios instead of the short ones."""


@dataclass(frozen=True)
class Scale:
    """Short (``make test``) or full (``make soak``) parameters of the scenarios."""

    soak: bool

    @property
    def mode(self) -> str:
        return "soak" if self.soak else "short"

    def pick(self, short: Any, full: Any) -> Any:
        """Return ``full`` under ``make soak``, else ``short``."""
        return full if self.soak else short


def time_limit(short: float, full: float) -> pytest.MarkDecorator:
    """Return a pytest-timeout mark that fits the scenario's length in this mode."""
    return pytest.mark.timeout(full if SOAK else short)


class LogCounter(logging.Handler):
    """Count the records of one logger tree (with their messages), as a context manager."""

    def __init__(self, name: str = "addrbus", level: int = logging.INFO) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)
        self._old_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def count(self, text: str, level: int = logging.NOTSET) -> int:
        """Return how many records at ``level`` or above contain ``text``."""
        return sum(1 for r in self.records if r.levelno >= level and text in r.getMessage())

    def at_least(self, level: int) -> list[str]:
        """Return the messages at ``level`` or above."""
        return [r.getMessage() for r in self.records if r.levelno >= level]

    def __enter__(self) -> LogCounter:
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > self.level:
            self._logger.setLevel(self.level)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)
