"""The jobs of one bus: added, started and stopped with it, run on APScheduler 3.

Each ``start()`` builds a fresh ``AsyncIOScheduler`` (see :mod:`.triggers`), so
a stopped bus can start again. Singleton jobs are decided from membership, at
each occurrence, on each node (see docs/scheduling.md). The bus is reached only
through :class:`JobHost`, its public members.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .._exceptions import ConfigError
from .._threads import run_in_thread
from .job import Job, JobState
from .triggers import Trigger, start_apscheduler

logger = logging.getLogger("addrbus._scheduler")
F = TypeVar("F", bound="Callable[..., Any]")

_MAX_NAME = 200


class Subscription(Protocol):
    """A handler registration, as :meth:`JobHost.on` returns it."""

    def unregister(self) -> None:
        """Remove the handler."""
        ...


class JobHost(Protocol):
    """The bus, as its scheduler uses it."""

    @property
    def running(self) -> bool:
        """Tell whether the bus is started."""
        ...

    @property
    def node_id(self) -> str:
        """Return this node's id."""
        ...

    def nodes(self) -> dict[str, dict[str, int]]:
        """Return every live node (this one included) with the addresses it consumes and how many handlers."""
        ...

    def on(self, address: str, handler: Callable[..., Any]) -> Subscription:
        """Register a handler at ``address``."""
        ...


async def _nothing() -> None:
    """Stand for a singleton job at its hidden address (nobody sends it anything)."""


class JobScheduler:
    """The jobs of one bus, on an APScheduler ``AsyncIOScheduler`` that lives while the bus runs.

    Args:
        host: the bus.
        stop_timeout: how long :meth:`stop` waits for runs in progress.
        heartbeat: the bus's membership heartbeat, in seconds.
    """

    def __init__(self, host: JobHost, *, stop_timeout: float, heartbeat: float) -> None:
        self._host = host
        self._stop_timeout, self._heartbeat = stop_timeout, heartbeat
        self._jobs: dict[str, JobState] = {}
        self._hidden: dict[JobState, Subscription] = {}  # singleton jobs' consumers at their addresses
        self._sched: Any = None
        self._generation = 0  # a scheduler being shut down must not start runs of the next one
        self._runs: set[asyncio.Task[None]] = set()
        self._active = host.running  # the bus makes this object at the first schedule(), maybe while running

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
        state = self._jobs[name] = JobState(self, name, fn, trigger, singleton)
        self._show(state)
        if self._sched is not None:
            self._submit(state)
        elif self._active:
            self._launch()
        return state.job

    def jobs(self) -> list[Job]:
        """Return the jobs, in the order they were added."""
        return [state.job for state in self._jobs.values()]

    async def start(self) -> None:
        """Start running the jobs (called at the end of ``bus.start()``)."""
        self._active = True
        self._launch()

    def _launch(self) -> None:
        if self._sched is None:
            self._generation += 1
            self._sched = start_apscheduler(self._skipped)
            for state in self._jobs.values():
                self._submit(state)

    async def stop(self) -> None:
        """Stop running the jobs; wait for runs in progress (``stop_timeout``), then cancel them."""
        sched, self._sched, self._active = self._sched, None, False
        if sched is None:
            return
        self._generation += 1
        sched.pause()  # at once, where shutdown() waits for a later turn of the loop
        runs = self._runs - {asyncio.current_task()}  # a job may stop the bus itself
        if runs:
            _, late = await asyncio.wait(runs, timeout=self._stop_timeout)
            for task in late:
                task.cancel()
            if late:
                logger.warning("cancelled %d job run(s) still going when the bus stopped", len(late))
                await asyncio.wait(late, timeout=1.0)
        sched.shutdown(wait=False)

    # -- what a Job asks (JobControl) -----------------------------------------------

    def next_run_time(self, state: JobState) -> datetime | None:
        """Return when the job runs next, or None if paused, removed or the bus is stopped."""
        aps_job = self._aps_job(state)
        return None if aps_job is None else aps_job.next_run_time

    def pause(self, state: JobState) -> None:
        """Pause the job; a singleton job's hidden consumer goes, so that another node runs it."""
        if not (state.removed or state.paused):
            state.paused = True
            if self._aps_job(state) is not None:
                self._sched.pause_job(state.job.name)
            self._hide(state)

    def resume(self, state: JobState) -> None:
        """Resume a paused job from its next occurrence."""
        if state.paused and not state.removed:
            state.paused = False
            self._show(state)
            if self._aps_job(state) is not None:
                self._sched.resume_job(state.job.name)

    def remove(self, state: JobState) -> None:
        """Remove the job for good; its name may be used again."""
        if not state.removed:
            self._remove(state)

    # -- bookkeeping ------------------------------------------------------------------

    def _submit(self, state: JobState) -> None:
        job = state.job
        paused = {"next_run_time": None} if state.paused else {}
        self._sched.add_job(
            self._fire, job.trigger.build(), args=(state, self._generation), id=job.name, name=job.name,
            max_instances=1, coalesce=True, misfire_grace_time=None, replace_existing=True, **paused,
        )

    def _aps_job(self, state: JobState) -> Any:
        return None if self._sched is None or state.removed else self._sched.get_job(state.job.name)

    def _skipped(self, event: Any) -> None:
        state = self._jobs.get(event.job_id)
        if state is not None:
            state.count("skipped")

    def _show(self, state: JobState) -> None:
        job = state.job
        if job.singleton and state not in self._hidden and not state.paused:
            self._hidden[state] = self._host.on(job.address, _nothing)

    def _hide(self, state: JobState, delay: float = 0.0) -> None:
        reg = self._hidden.pop(state, None)
        if reg is not None and delay > 0:
            asyncio.get_running_loop().call_later(delay, reg.unregister)
        elif reg is not None:
            reg.unregister()

    def _remove(self, state: JobState, delay: float = 0.0) -> None:
        name = state.job.name
        if self._aps_job(state) is not None:
            self._sched.remove_job(name)
        state.removed = True
        if self._jobs.get(name) is state:
            del self._jobs[name]
        self._hide(state, delay)

    # -- running ----------------------------------------------------------------------

    def _leads(self, job: Job) -> bool:
        """Tell whether this node is the live node with the smallest id among those having ``job``."""
        having = [node for node, addresses in self._host.nodes().items() if addresses.get(job.address, 0) > 0]
        return min(having, default=None) == self._host.node_id

    async def _fire(self, state: JobState, generation: int) -> None:
        """Run one occurrence (APScheduler calls this; max_instances=1 keeps runs from overlapping)."""
        if generation != self._generation or state.removed:
            return
        job = state.job
        leads = not job.singleton or self._leads(job)
        if job.trigger.once:
            # Peers fire at the same moment: keep the hidden consumer a while, so that
            # none of them finds this node gone and runs the occurrence again.
            self._remove(state, delay=3 * self._heartbeat)
        if not leads:
            state.count("standby")
            return
        run = asyncio.get_running_loop().create_task(self._run(state), name=f"addrbus job {job.name}")
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        try:
            # wait(), not await: a run cancelled by stop() must not look like an APScheduler job error.
            await asyncio.wait({run})
        finally:
            run.cancel()  # no-op once done; if we are cancelled, the run goes too

    async def _run(self, state: JobState) -> None:
        job = state.job
        try:
            if state.is_async:
                await job.fn()
            else:
                # abandon_on_cancel: stop() cannot interrupt a thread, but need not wait for it.
                result = await run_in_thread(job.fn, abandon_on_cancel=True)
                if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                    await result
        except asyncio.CancelledError:
            logger.warning("job %r was cancelled", job.name)
            raise
        except Exception:
            logger.exception("job %r raised", job.name)
            state.count("runs", "failures")
        else:
            state.count("runs")
