"""Start a local request's handler eagerly on Python 3.12+, so one that never suspends ends within the call.

A task started eagerly runs at once, inside ``request()`` (or the call that
queued a request of this bus), up to the handler's first suspension; only
then does the loop schedule it. A local request whose handler does not
suspend is answered before ``request()`` awaits anything, with no loop turn
at all. The task is made with ``asyncio.Task(..., eager_start=True)``: the
user's loop and its task factory are left alone. Publishes, sends and frames
from the network are left to runners that take a burst in one go.

Three bounds keep the caller's call what it was:

* depth: a handler that requests another local handler starts that one
  eagerly too, at most :data:`MAX_DEPTH` deep; deeper ones wait a loop turn.
* budget: at most :data:`TURN_BUDGET` eager starts per loop turn, so a
  caller that loops over requests to a handler that never suspends still
  lets the loop run (timers, heartbeats, other tasks) now and then.
* a call in progress: while the way out holds work for its caller (full
  backlogs to wait on, copies to send), a handler is started lazily, so that
  its own calls never see that work.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Python has ``asyncio.Task(..., eager_start=True)`` (3.12+).
EAGER = sys.version_info >= (3, 12)
#: Nested eager starts (a handler requesting a handler requesting ...).
MAX_DEPTH = 8
#: Eager starts per loop turn, after which runners wait for the loop as on 3.11.
TURN_BUDGET = 1000


class Busy(Protocol):
    """The way out: ``more`` is true while a call holds work for its caller."""

    more: bool


class Starter:
    """Start runner tasks on the bus's loop, eagerly where Python and the bounds allow."""

    __slots__ = ("_depth", "_left", "_out", "_refill_scheduled", "eager")

    def __init__(self, out: Busy, *, eager: bool = EAGER) -> None:
        self._out = out
        #: Start eagerly at all (false on Python 3.11, and where a test asks for the lazy path).
        self.eager = eager and EAGER
        self._depth = 0
        self._left = TURN_BUDGET
        self._refill_scheduled = False

    def ready(self) -> bool:
        """Tell whether a task started now may start eagerly (:meth:`eager_task`)."""
        return self.eager and self._depth < MAX_DEPTH and self._left > 0 and not self._out.more

    def eager_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Return a task that has run ``coro`` up to its first suspension, or to its end (:meth:`ready` said so)."""
        loop = asyncio.get_running_loop()
        self._left -= 1
        if not self._refill_scheduled:
            self._refill_scheduled = True
            loop.call_soon(self.refill)
        self._depth += 1
        try:
            return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        finally:
            self._depth -= 1

    def refill(self) -> None:
        """A loop turn went by: the budget is whole again."""
        self._refill_scheduled = False
        self._left = TURN_BUDGET
