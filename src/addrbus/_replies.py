"""Pending requests: correlation id → future, each with its own deadline."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ._exceptions import ReplyError, RequestTimeout

if TYPE_CHECKING:
    from ._codec import BodySpec


class Pending(NamedTuple):
    """One request waiting for its reply (a tuple: one is made per request)."""

    future: asyncio.Future[Any]
    node: str
    spec: BodySpec | None
    address: str


_new_pending = tuple.__new__
_monotonic = time.monotonic


class PendingRequests:
    """Track requests until they are answered, fail, or time out.

    Every entry leaves the map through :meth:`discard`, which the requester
    calls in ``finally``: a cancelled requester never leaves one behind.

    Timeouts: requests with the same timeout expire in the order they were
    made, so each distinct timeout keeps a FIFO of (deadline, id) and one timer
    is armed for the earliest deadline overall. This is O(1) a request, where
    a timer per request costs a heap push and a cancel (a third of a local
    round trip).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._entries: dict[str, Pending] = {}
        self._fifos: dict[float, collections.deque[tuple[float, str]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, cid: str, timeout: float, node: str, spec: BodySpec | None, address: str) -> asyncio.Future[Any]:
        """Register a request and arm its timeout."""
        future: asyncio.Future[Any] = self._loop.create_future()
        deadline = _monotonic() + timeout  # what loop.time() returns, minus a method call
        entries = self._entries
        entries[cid] = _new_pending(Pending, (future, node, spec, address))
        fifo = self._fifos.get(timeout)
        if fifo is None:
            fifo = self._fifos[timeout] = collections.deque()
        elif len(fifo) > 2 * len(entries) + 1024:
            # Answered requests stay in the FIFO until their deadline; compact now
            # and then so a burst of them cannot pile up for a whole timeout.
            live = [item for item in fifo if item[1] in entries]
            fifo.clear()
            fifo.extend(live)
        fifo.append((deadline, cid))
        if deadline < self._timer_at:
            self._arm(deadline)
        return future

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        t = self._loop.time()
        entries = self._entries
        earliest = float("inf")
        for timeout, fifo in list(self._fifos.items()):
            while fifo:
                deadline, cid = fifo[0]
                entry = entries.get(cid)
                if entry is None:
                    fifo.popleft()
                elif deadline <= t:
                    fifo.popleft()
                    if not entry.future.done():
                        entry.future.set_exception(
                            RequestTimeout(f"no reply from {entry.address!r} within {timeout:g} s", code=-1)
                        )
                    del entries[cid]
                else:
                    earliest = min(earliest, deadline)
                    break
            if not fifo:
                del self._fifos[timeout]
        if earliest != float("inf"):
            self._arm(earliest)

    def get(self, cid: str) -> Pending | None:
        """Return the waiting request, or None if it is gone (late or unknown)."""
        entry = self._entries.get(cid)
        if entry is None or entry.future.done():
            return None
        return entry

    def discard(self, cid: str) -> None:
        """Forget a request; called by the requester when it stops waiting."""
        self._entries.pop(cid, None)

    def close(self) -> None:
        """Cancel the timer (the bus stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = float("inf")
        self._fifos.clear()

    def fail_node(self, node: str, make_error: type[ReplyError], why: str) -> int:
        """Fail every request owed by ``node``; return how many."""
        failed = 0
        for entry in list(self._entries.values()):
            if entry.node == node and not entry.future.done():
                entry.future.set_exception(make_error(f"request to {entry.address!r} failed: {why}"))
                failed += 1
        return failed

    def fail_all(self, make_error: type[ReplyError], why: str) -> int:
        """Fail every pending request; return how many."""
        failed = 0
        for entry in list(self._entries.values()):
            if not entry.future.done():
                entry.future.set_exception(make_error(f"request to {entry.address!r} failed: {why}"))
                failed += 1
        return failed
