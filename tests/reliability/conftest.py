"""Fixtures of the reliability suite, and the table it prints at the end of the run.

``make test`` runs each scenario briefly; ``make soak`` (``ADDRBUS_SOAK=1``)
runs the full ones. Every scenario leaves one JSON record in
``reliability-results/`` (or ``$ADDRBUS_RELIABILITY_DIR``); the summary table
lists them all and fails the run on any breach, even one a test let pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from addrbus import EventBus
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.reliability import _lossy
from tests.reliability._measure import SOAK, Record, Scale
from tests.transports.test_udp import udp_url

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ["memory", "udp", "redis"]

_RECORDS = pytest.StashKey[list[Record]]()
_SESSION = pytest.StashKey[pytest.Session]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def results_dir() -> Path:
    """Return where records go: ``$ADDRBUS_RELIABILITY_DIR`` or ``reliability-results/``, then ``short/`` or ``soak/``.

    One directory per mode, so that a ``make test`` never overwrites the figures of a ``make soak``.
    """
    base = Path(os.environ.get("ADDRBUS_RELIABILITY_DIR") or ROOT / "reliability-results")
    return base / Scale(SOAK).mode


@pytest.fixture(scope="session")
def scale() -> Scale:
    """Return the scenarios' scale: short under ``make test``, full under ``make soak``."""
    return Scale(SOAK)


@dataclass
class Net:
    """One transport for one test: buses built here share its hub, group or server."""

    kind: str
    base: str
    namespace: str
    make_bus: Callable[..., EventBus]

    def url(self, *, serialize: bool = False) -> str:
        """Return the bus URL; on memory://, ``serialize`` makes every frame round-trip the codec."""
        if self.kind == "memory" and serialize:
            return self.base + "?serialize=1"
        return self.base

    def bus(self, *, serialize: bool = False, **options: Any) -> EventBus:
        """Build a bus on this transport (stopped at teardown)."""
        return self.make_bus(self.url(serialize=serialize), namespace=self.namespace, **options)


@pytest.fixture(params=TRANSPORTS)
def net(request: pytest.FixtureRequest, make_bus: Callable[..., EventBus]) -> Net:
    """Yield each transport in turn: memory://, udp:// (private netns only), redis://."""
    kind: str = request.param
    if kind == "memory":
        base = f"memory://{unique('hub')}"
    elif kind == "udp":
        require_private_netns()
        base = udp_url()
    else:
        base = request.getfixturevalue("redis_server").url
    return Net(kind, base, unique("ns"), make_bus)


@pytest.fixture
def record(request: pytest.FixtureRequest, scale: Scale) -> Iterator[Callable[..., Record]]:
    """Return ``new(scenario, transport, **params) -> Record``; records are written at teardown."""
    made: list[Record] = []

    def new(scenario: str, transport: str, **params: Any) -> Record:
        rec = Record(scenario, transport, scale.mode, params)
        made.append(rec)
        return rec

    yield new
    report = request.node.stash.get(_REPORTS, {}).get("call")
    for rec in made:
        if report is not None and report.failed and not rec.breaches:
            # The test failed before (or besides) a recorded breach: say so in the table.
            rec.error = (report.longreprtext.strip().splitlines() or ["failed"])[-1][:200]
        rec.write(results_dir())
        request.config.stash.setdefault(_RECORDS, []).append(rec)


@pytest.fixture
def fault_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the faulty transports' URL schemes (lossyudp://, lossymem://) for one test."""
    import addrbus.transports.registry

    for scheme in _lossy.SCHEMES:
        monkeypatch.setitem(addrbus.transports.registry.SCHEMES, scheme, _lossy.__name__)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION] = session


_COLUMNS = [
    ("scenario", "scenario"), ("transport", "transport"), ("s", "seconds"), ("sent", "sent"), ("ok", "ok"),
    ("lost", "lost"), ("dup", "duplicates"), ("mis", "mis_correlated"), ("reord", "reorders"),
    ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("lag p99 ms", "loop_lag_p99_ms"),
    ("RSS Δ MB", "rss_growth_mb"), ("heap Δ MB", "tracemalloc_growth_mb"),
]  # fmt: skip


def table(records: list[Record]) -> list[str]:
    """Return the records as a Markdown table, one row each, with the verdict last."""
    head = [title for title, _ in _COLUMNS] + ["result"]
    rows = []
    for rec in sorted(records, key=lambda r: (r.scenario, TRANSPORTS.index(r.transport)
                                              if r.transport in TRANSPORTS else 9)):
        cells = []
        for _, attr in _COLUMNS:
            value = getattr(rec, attr)
            cells.append("–" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value))
        if rec.passed:
            verdict = "ok"
        else:
            why = [str(c) for c in rec.breaches] + ([rec.error] if rec.error else []) or ["no checks ran"]
            verdict = "BREACH: " + "; ".join(why)
        rows.append([*cells, verdict])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    mode = records[0].mode
    lines = table(records)
    terminalreporter.section(f"addrbus reliability ({mode})")
    for line in lines:
        terminalreporter.write_line(line)
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    failed = [r for r in records if not r.passed]
    if failed:
        terminalreporter.write_line(f"reliability: {len(failed)} scenario(s) breached their targets", red=True)
        session = config.stash.get(_SESSION, None)
        if session is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    terminalreporter.write_line(f"records in {out}")
