"""Fire requests and account for every one: ok, timeout, no handlers, failed, unresolved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from addrbus import NoHandlers, ReplyError, RequestTimeout

from ._measure import Record


@dataclass
class Outcomes:
    """What became of a batch of requests."""

    sent: int = 0
    ok: int = 0
    timeout: int = 0
    no_handlers: int = 0
    failed: int = 0
    unresolved: int = 0
    cancelled: int = 0
    mis_correlated: int = 0
    resolutions: int = 0  # how many times any request resolved: must equal sent
    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # seconds past the timeout, per timed-out request
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: Outcomes) -> None:
        """Add the counts and samples of ``other`` to these."""
        for name in ("sent", "ok", "timeout", "no_handlers", "failed", "unresolved", "cancelled",
                     "mis_correlated", "resolutions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        self.late += other.late
        for key, value in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + value

    def fill(self, rec: Record) -> None:
        """Copy the counts into ``rec``."""
        rec.sent, rec.ok, rec.timeout = self.sent, self.ok, self.timeout
        rec.no_handlers, rec.failed, rec.unresolved = self.no_handlers, self.failed, self.unresolved
        rec.mis_correlated = self.mis_correlated
        rec.lost = self.timeout + self.unresolved
        rec.late_beyond_timeout_ms = round(max(self.late, default=0.0) * 1000, 3)
        rec.latencies(self.latencies)
        if self.errors:
            rec.extra["errors"] = dict(self.errors)


async def fire(
    request: Callable[[int], Awaitable[Any]],
    count: int,
    timeout: float,
    expect: Callable[[int, Any], bool],
    *,
    margin: float = 1.0,
    window: int | None = None,
) -> Outcomes:
    """Run ``request(i)`` for i in range(count), at most ``window`` at once (all at once by default).

    Each request must resolve (reply or error) within ``timeout + margin``;
    those that have not by then are counted unresolved and cancelled.
    """
    out = Outcomes(sent=count)
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(window or count)

    async def one(i: int) -> None:
        async with gate:
            t0 = loop.time()
            try:
                reply = await request(i)
            except RequestTimeout:
                out.timeout += 1
                out.late.append(max(0.0, loop.time() - t0 - timeout))
            except NoHandlers:
                out.no_handlers += 1
            except ReplyError as exc:
                out.failed += 1
                name = type(exc).__name__ + ":" + str(getattr(exc, "remote_type", "") or "")
                out.errors[name] = out.errors.get(name, 0) + 1
            else:
                out.ok += 1
                out.latencies.append(loop.time() - t0)
                if not expect(i, reply):
                    out.mis_correlated += 1
            out.resolutions += 1

    tasks = [loop.create_task(one(i)) for i in range(count)]
    # With a window, later requests start late: give each slot its own bound.
    rounds = 1 if window is None else -(-count // window)
    done, pending = await asyncio.wait(tasks, timeout=(timeout + margin) * rounds)
    out.unresolved = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            out.failed += 1
            name = type(task.exception()).__name__
            out.errors[name] = out.errors.get(name, 0) + 1
    return out
