"""Watchdog: tell which handler held the event loop (a blocking call in an ``async def``).

Nothing is timed per message. A timer on the loop notes the time every ``threshold / 2``
seconds; a thread looks at that note every ``threshold / 4`` seconds, and while the timer is
late it samples the loop thread's stack (code objects and lines only: never a frame, whose
locals it would keep alive). When the timer runs again after a gap longer than the
threshold, that stall is reported once, on the loop: a registered handler whose frame is the
innermost handler frame of at least half the samples is named as its cause. The gap is measured between two runs of the
timer, so it may exceed the blocking call by up to ``threshold / 2``, never fall short of it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

from .._exceptions import ConfigError

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

#: The default of ``EventBus(blocking_threshold=)``, in seconds.
DEFAULT_BLOCKING_THRESHOLD = 0.1
#: Below this the timer and the thread would cost more than they are worth (200 and 400 wake-ups a second).
MIN_BLOCKING_THRESHOLD = 0.01
MAX_BLOCKING_THRESHOLD = 3600.0
#: Stacks kept for one stall (the latest), frames kept of one stack (the innermost), objects unwrapped per handler.
MAX_SAMPLES, MAX_DEPTH, MAX_UNWRAP = 8, 128, 16
#: Lines logged at once before they are rationed, then one every ``REPORT_INTERVAL`` seconds (each kind).
REPORT_BURST, REPORT_INTERVAL = 5, 10.0
#: How long ``stop()`` waits for the thread, which wakes at once when told to stop.
JOIN_TIMEOUT = 1.0
#: Seconds between the thread's looks while the loop's timer runs on time. Each look takes the
#: GIL from the loop for a moment: 40 looks a second cost 7 % of the 100-requesters round trips
#: on 3.11, 2 a second nothing measurable. Once the loop is late it looks every threshold / 4.
IDLE_WAKE = 0.5

#: CPython's, and absent elsewhere: without it stalls are still counted, with no culprit named.
_current_frames: Callable[[], dict[int, types.FrameType]] | None = getattr(sys, "_current_frames", None)

Handlers = Callable[[], Iterable[tuple[str, Callable[..., Any]]]]
Stack = tuple[tuple[types.CodeType, int], ...]  # (code, line), the innermost frame first


def check_blocking_threshold(value: Any) -> float | None:
    """Return ``blocking_threshold`` in seconds, or None (``None`` or ``0``: no watchdog).

    :raises ConfigError: for anything but a number of seconds from 0.01 to 3600.
    """
    if value is None or (type(value) in (int, float) and value == 0):
        return None
    if type(value) not in (int, float) or not MIN_BLOCKING_THRESHOLD <= value <= MAX_BLOCKING_THRESHOLD:
        raise ConfigError(f"blocking_threshold must be None, 0 (off) or {MIN_BLOCKING_THRESHOLD} to"
                          f" {MAX_BLOCKING_THRESHOLD:g} seconds, not {value!r}")
    return float(value)  # NaN fails the comparison above, infinity the upper bound


class _Ration:
    """Allow ``REPORT_BURST`` lines at once, then one every ``REPORT_INTERVAL`` seconds; count the rest."""

    def __init__(self) -> None:
        self._tokens = float(REPORT_BURST)
        self._at = time.monotonic()
        self._held = 0

    def take(self) -> int | None:
        """Return how many lines were held back since the last one, or None: hold this one back too."""
        now = time.monotonic()
        self._tokens = min(REPORT_BURST, self._tokens + (now - self._at) / REPORT_INTERVAL)
        self._at = now
        if self._tokens < 1:
            self._held += 1
            return None
        self._tokens -= 1
        held, self._held = self._held, 0
        return held


def _codes(handler: Callable[..., Any]) -> list[types.CodeType]:
    """Return the code objects a run of ``handler`` may execute: through partials, methods, ``__wrapped__``."""
    found: list[types.CodeType] = []
    todo: list[Any] = [handler]
    for _ in range(MAX_UNWRAP):  # a Mock has a __wrapped__ of its own without end
        if not todo:
            break
        obj = todo.pop()
        try:
            if isinstance(obj, functools.partial):
                todo.append(obj.func)
                continue
            if isinstance(obj, types.MethodType):
                todo.append(obj.__func__)
                continue
            code = getattr(obj, "__code__", None)
            if isinstance(code, types.CodeType):
                found.append(code)
            elif not isinstance(obj, type) and callable(obj):  # an object with an async __call__
                todo.append(getattr(type(obj), "__call__", None))  # noqa: B004 - the method, not callable()
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
        except Exception:  # a user's object whose attributes raise: it names nothing
            continue
    return found


def _name(handler: Callable[..., Any]) -> str:
    """Return a handler's name for the log line, never a long repr of a partial's arguments."""
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", None)
    return name if isinstance(name, str) else type(target).__qualname__


def _stack(frame: types.FrameType | None) -> Stack:
    stack: list[tuple[types.CodeType, int]] = []
    while frame is not None and len(stack) < MAX_DEPTH:
        stack.append((frame.f_code, frame.f_lineno or 0))
        frame = frame.f_back
    return tuple(stack)


class Watchdog:
    """Report every run of the loop held longer than ``threshold`` seconds, naming the handler that held it.

    Args:
        threshold: seconds (checked by :func:`check_blocking_threshold`); None: ``start()`` does nothing.
        handlers: return the registered ``(address, handler)`` pairs; called on the loop, only after a stall.
        count: count ``stalls.handler`` or ``stalls.loop``; called on the loop.
    """

    def __init__(self, threshold: float | None, handlers: Handlers, count: Callable[[str], None]) -> None:
        self.enabled = threshold is not None
        self.threshold = threshold or MAX_BLOCKING_THRESHOLD
        self._interval = self.threshold / 2
        self._handlers = handlers
        self._count = count
        self._last = 0.0  # time.monotonic() of the timer's last run; read by the thread
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: The thread's samples, tagged with the timer run they follow (one stall): bounded, latest kept.
        self._samples: collections.deque[tuple[float, Stack]] = collections.deque(maxlen=MAX_SAMPLES)
        self._known: list[tuple[str, Callable[..., Any]]] = []  # the handlers _by_code was built for
        self._by_code: dict[types.CodeType, tuple[list[str], str]] = {}
        self._rations = {"handler": _Ration(), "loop": _Ration()}

    @property
    def thread(self) -> threading.Thread | None:
        """Return the sampling thread while it runs (None without ``sys._current_frames``, or stopped)."""
        return self._thread

    def start(self) -> None:
        """Watch the running loop, from its own thread; idempotent."""
        if self._timer is not None or not self.enabled:
            return
        loop = asyncio.get_running_loop()
        self._last = time.monotonic()
        self._timer = loop.call_later(self._interval, self._tick, loop)
        if _current_frames is not None:
            self._stopping = threading.Event()  # a thread of an earlier start() keeps its own
            self._thread = threading.Thread(target=self._watch, args=(self._stopping, threading.get_ident(), loop),
                                            name="addrbus-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching: cancel the timer, end the thread (it wakes at once); idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
        self._samples.clear()

    # -- on the loop -------------------------------------------------------------------

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        since, gap = self._last, now - self._last
        self._last = now
        self._timer = loop.call_later(self._interval, self._tick, loop)
        if gap > self.threshold:
            try:
                self._report(gap, [stack for key, stack in list(self._samples) if key == since])
            except Exception:  # the watchdog must never take the loop's callbacks down with it
                logger.exception("the blocking-call watchdog failed to report a stall")
            self._samples.clear()

    def _report(self, gap: float, samples: list[Stack]) -> None:
        found = self._culprit(samples)
        if found is not None:
            self._count("stalls.handler")
            skipped = self._rations["handler"].take()
            if skipped is not None:
                addresses, name, code, line = found
                logger.warning("handler %s at %s held the event loop for %.2f s (line %d of %s): a blocking call in"
                               " an async def? Make it a plain def, which runs in a worker thread, or await"
                               " asyncio.to_thread(...)%s", name, ", ".join(map(repr, addresses)), gap, line,
                               code.co_filename, _more(skipped))
            return
        self._count("stalls.loop")
        skipped = self._rations["loop"].take()
        if skipped is not None:
            if samples:
                code, line = samples[-1][0]
                where = f"last seen in {code.co_name} at line {line} of {code.co_filename}"
            else:
                where = "its stack was not sampled" if _current_frames is not None else "not sampled: not CPython"
            logger.info("the event loop was held for %.2f s, not by a handler of this bus (%s)%s", gap, where,
                        _more(skipped))

    def _culprit(self, samples: list[Stack]) -> tuple[list[str], str, types.CodeType, int] | None:
        """Return the handler whose frame is innermost in at least half the samples, with its latest line.

        One blocking call shows in every sample. A coroutine that holds the loop with many quick
        handler calls (a burst of requests that never suspend) shows a handler now and then: the
        loop's, not that handler's.
        """
        if not samples:
            return None
        by_code = self._handler_codes()
        tally: dict[types.CodeType, int] = {}
        lines: dict[types.CodeType, int] = {}
        for stack in samples:  # oldest first: the line kept is the latest
            for code, line in stack:
                if code in by_code:
                    tally[code] = tally.get(code, 0) + 1
                    lines[code] = line
                    break
        if not tally:
            return None
        code = max(tally, key=tally.__getitem__)
        if tally[code] * 2 < len(samples):
            return None
        addresses, name = by_code[code]
        return addresses, name, code, lines[code]

    def _handler_codes(self) -> dict[types.CodeType, tuple[list[str], str]]:
        """Return code object -> (addresses, handler name), built again when the handlers changed."""
        try:
            pairs = list(self._handlers())
        except Exception:
            logger.debug("the watchdog could not list the handlers", exc_info=True)
            return {}
        if pairs != self._known:  # the same functions at the same addresses, compared by identity
            by_code: dict[types.CodeType, tuple[list[str], str]] = {}
            for address, handler in pairs:
                name = _name(handler)
                for code in _codes(handler):
                    addresses, _ = by_code.setdefault(code, ([], name))
                    if address not in addresses:
                        addresses.append(address)  # one function registered at several addresses
            self._known, self._by_code = pairs, by_code
        return self._by_code

    # -- in the thread -----------------------------------------------------------------

    def _watch(self, stopping: threading.Event, loop_thread: int, loop: asyncio.AbstractEventLoop) -> None:
        """Sample the loop thread's stack while the timer is late; end on stop(), or when the loop ends."""
        frames = _current_frames
        late = self._interval + self.threshold / 4  # a timer a quarter threshold late: something holds the loop
        idle, fast = max(IDLE_WAKE, self.threshold), self.threshold / 4
        wait = idle
        try:
            while not stopping.wait(wait) and frames is not None:
                since = self._last
                if time.monotonic() - since <= late:
                    wait = idle
                    continue
                wait = fast
                if loop.is_closed():
                    return  # the loop ended without stop(): nothing left to watch
                if not loop.is_running():
                    continue  # between two run_until_complete() calls: nothing holds it
                frame = frames().get(loop_thread)
                try:
                    self._samples.append((since, _stack(frame)))
                finally:
                    del frame
        except Exception:  # never raise in a thread nobody joins; the timer still counts stalls
            logger.debug("the blocking-call watchdog's thread failed; stalls are counted, not attributed",
                         exc_info=True)


def _more(skipped: int) -> str:
    return f" ({skipped} more like this since the last report)" if skipped else ""
