"""A scheduled job as users hold it (:class:`Job`), and the state it shares with its scheduler."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from .triggers import Trigger

JOB_ADDRESS_PREFIX = "_addrbus.job."


class JobControl(Protocol):
    """What a :class:`Job` asks of the scheduler that runs it."""

    def next_run_time(self, state: JobState) -> datetime | None:
        """Return when the job runs next, or None if it does not."""
        ...

    def pause(self, state: JobState) -> None:
        """Pause the job (a no-op if it is paused or removed)."""
        ...

    def resume(self, state: JobState) -> None:
        """Resume the job (a no-op unless it is paused)."""
        ...

    def remove(self, state: JobState) -> None:
        """Remove the job (a no-op if it is removed)."""
        ...


class JobState:
    """What the scheduler changes of one job; it makes the :class:`Job` (``state.job``) that users hold."""

    def __init__(self, control: JobControl, name: str, fn: Callable[..., Any], trigger: Trigger,
                 singleton: bool) -> None:
        self.paused = self.removed = False
        self.changed: asyncio.Event | None = None  # set at the next count: Job.wait() looks again
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an async __call__ counts
        )
        self.job = Job(control, self, name, fn, trigger, singleton)

    def count(self, *counters: str) -> None:
        """Add one to each of the job's ``counters`` and wake its waiters."""
        for counter in counters:
            setattr(self.job, counter, getattr(self.job, counter) + 1)
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()


class Job:
    """A function scheduled on a bus; ``bus.jobs()`` lists them.

    Counters: ``runs`` (finished runs, ``failures`` among them those that
    raised), ``skipped`` (occurrences dropped because the previous run was
    still going) and ``standby`` (occurrences of a singleton job left to
    another node).
    """

    def __init__(self, control: JobControl, state: JobState, name: str, fn: Callable[..., Any], trigger: Trigger,
                 singleton: bool) -> None:
        self.name, self.fn, self.trigger, self.singleton = name, fn, trigger, singleton
        self.runs = self.failures = self.skipped = self.standby = 0
        self._control, self._state = control, state

    def __repr__(self) -> str:
        state = self._state
        shown = "removed" if state.removed else "paused" if state.paused else f"next={self.next_run_time}"
        return f"<Job {self.name!r} {self.trigger!r} {shown} runs={self.runs}>"

    @property
    def address(self) -> str:
        """Return the hidden address whose consumers are the nodes having this job."""
        return JOB_ADDRESS_PREFIX + self.name

    @property
    def paused(self) -> bool:
        """Tell whether the job is paused."""
        return self._state.paused

    @property
    def next_run_time(self) -> datetime | None:
        """Return when the job runs next (aware), or None if paused, removed or the bus is stopped."""
        return self._control.next_run_time(self._state)

    def pause(self) -> None:
        """Stop running the job until :meth:`resume`; a singleton job is handed to another node."""
        self._control.pause(self._state)

    def resume(self) -> None:
        """Run the job again from its next occurrence (a one-shot job whose time has passed runs now)."""
        self._control.resume(self._state)

    def remove(self) -> None:
        """Remove the job for good (a run in progress finishes); its name may be used again."""
        self._control.remove(self._state)

    async def wait(self, *, runs: int = 0, failures: int = 0, skipped: int = 0, standby: int = 0,
                   timeout: float = 10.0) -> None:
        """Wait until each counter has reached at least the value given (for tests, instead of sleeping).

        Raises:
            TimeoutError: if that did not happen within ``timeout`` seconds.
        """
        state = self._state
        async with asyncio.timeout(timeout):
            while self.runs < runs or self.failures < failures or self.skipped < skipped or self.standby < standby:
                if state.changed is None:
                    state.changed = asyncio.Event()
                await state.changed.wait()
