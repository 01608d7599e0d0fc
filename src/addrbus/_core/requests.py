"""Requests in flight: correlation id → future with its deadline, and the replies that resolve them."""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from .._exceptions import (
    BusStopped,
    MessageTooLarge,
    NoHandlers,
    RecipientFailure,
    RecipientGone,
    ReplyError,
    RequestTimeout,
    TransportError,
)
from .._ids import now
from .._wire.bodies import ANY_SPEC, BodyInvalid
from .._wire.envelope import Failure, check_headers, make_envelope

if TYPE_CHECKING:
    from .._counters import Counters
    from .._ratelog import RateLimitedLog
    from .._wire.bodies import BodySpec
    from .._wire.wire import Wire
    from .node import Node

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

_FAILURES: dict[str, type[ReplyError]] = {
    "NO_HANDLERS": NoHandlers,
    "RECIPIENT_GONE": RecipientGone,
    "STOPPED": BusStopped,
}


class Pending(NamedTuple):
    """One request waiting for its reply (a tuple: one is made per request)."""

    future: asyncio.Future[Any]
    node: str
    spec: BodySpec | None
    address: str


#: Distinct timeout values that get a FIFO of their own; the rest share a heap.
MAX_FIFOS = 64

_new_pending = tuple.__new__
_monotonic = time.monotonic
_Future = asyncio.Future


class PendingRequests:
    """Track requests until they are answered, fail, or time out.

    Every entry leaves the map through :meth:`discard`, which the requester
    calls in ``finally``: a cancelled requester never leaves one behind.

    Timeouts: requests with the same timeout expire in the order they were
    made, so each distinct timeout keeps a FIFO of (deadline, id) and one timer
    is armed for the earliest deadline overall. This is O(1) a request, where
    a timer per request costs a heap push and a cancel (a third of a local
    round trip). Past ``MAX_FIFOS`` distinct timeouts (jittered ones,
    ``timeout=deadline - loop.time()``), the rest share one heap.

    Memory is bounded by what is pending: an answered request leaves its
    (deadline, id) behind until its deadline, so once those outnumber the
    pending ones by ``2x + 1024`` every queue is compacted.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # set by open() when the bus starts
        self._entries: dict[str, Pending] = {}
        self._fifos: dict[float, collections.deque[tuple[float, str]]] = {}
        self._heap: list[tuple[float, str, float]] = []  # (deadline, id, timeout) past MAX_FIFOS timeouts
        self._queued = 0  # (deadline, id) pairs in the FIFOs and the heap, answered or not
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self._entries)

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take requests on ``loop`` (the bus started)."""
        self._loop = loop

    def add(self, cid: str, timeout: float, node: str, spec: BodySpec | None, address: str) -> asyncio.Future[Any]:
        """Register a request and arm its timeout."""
        future: asyncio.Future[Any] = _Future(loop=self._loop)  # loop.create_future() is a Python frame more
        deadline = _monotonic() + timeout  # what loop.time() returns, minus a method call
        entries = self._entries
        entries[cid] = _new_pending(Pending, (future, node, spec, address))
        fifo = self._fifos.get(timeout)
        if fifo is None and len(self._fifos) < MAX_FIFOS:
            fifo = self._fifos[timeout] = collections.deque()
        if fifo is not None:
            fifo.append((deadline, cid))
        else:
            heapq.heappush(self._heap, (deadline, cid, timeout))
        self._queued += 1
        if self._queued > 2 * len(entries) + 1024:
            self._compact()
        if deadline < self._timer_at:
            self._arm(deadline)
        return future

    def _compact(self) -> None:
        """Drop the (deadline, id) pairs of requests no longer pending, and the FIFOs left empty."""
        entries = self._entries
        for timeout, fifo in list(self._fifos.items()):
            live = [item for item in fifo if item[1] in entries]
            if live:
                fifo.clear()
                fifo.extend(live)
            else:
                del self._fifos[timeout]
        self._heap = [item for item in self._heap if item[1] in entries]
        heapq.heapify(self._heap)
        self._queued = sum(map(len, self._fifos.values())) + len(self._heap)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)  # type: ignore[union-attr]

    def _time_out(self, cid: str, timeout: float) -> None:
        entry = self._entries.pop(cid)
        if not entry.future.done():
            entry.future.set_exception(RequestTimeout(f"no reply from {entry.address!r} within {timeout:g} s", code=-1))

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        t = _monotonic()
        entries = self._entries
        earliest = float("inf")
        popped = 0
        for timeout, fifo in list(self._fifos.items()):
            while fifo:
                deadline, cid = fifo[0]
                if cid in entries and deadline > t:
                    earliest = min(earliest, deadline)
                    break
                fifo.popleft()
                popped += 1
                if cid in entries:
                    self._time_out(cid, timeout)
            if not fifo:
                del self._fifos[timeout]
        heap = self._heap
        while heap:
            deadline, cid, timeout = heap[0]
            if cid in entries and deadline > t:
                earliest = min(earliest, deadline)
                break
            heapq.heappop(heap)
            popped += 1
            if cid in entries:
                self._time_out(cid, timeout)
        self._queued -= popped
        if earliest != float("inf"):
            self._arm(earliest)

    @property
    def entries(self) -> dict[str, Pending]:
        """Return the map of requests by correlation id, answered or not (the same dict for the object's life)."""
        return self._entries

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
        self._heap.clear()
        self._queued = 0

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


_INVALID = object()  # reply_body's answer for a reply that failed validation


def failure(message: str, code: int, remote_type: str) -> ReplyError:
    """Return the error a request fails with when its handler here failed (``remote_type``, as ``answer`` sends)."""
    error = _FAILURES.get(remote_type)
    if error is not None:
        return error(message, code=code)
    return RecipientFailure(message, code=code, remote_type=remote_type)


def invalid_reply(exc: BodyInvalid) -> RecipientFailure:
    """Return the failure of a request whose reply did not validate as its requester asked."""
    return RecipientFailure(f"the reply did not validate: {exc}", code=502, remote_type="InvalidReply")


def reply_body(entry: Pending, body: Any, is_json: bool) -> Any:
    """Return the reply's body as its requester asked for it, or fail the request and return ``_INVALID``."""
    spec = entry.spec
    try:
        if spec is not None:
            return spec.from_json(body) if is_json else spec.from_python(body)
        return ANY_SPEC.from_json(body) if is_json else body
    except BodyInvalid as exc:
        entry.future.set_exception(invalid_reply(exc))
        return _INVALID


class Replies:
    """Answer requests, here or on the requesting node, and resolve the answers this node gets."""

    def __init__(self, node: Node, pending: PendingRequests, wire: Wire, counters: Counters,
                 ratelog: RateLimitedLog) -> None:
        self._node = node
        self._pending = pending
        self._entries = pending.entries  # read directly: resolve_local is on every local round trip
        self._wire = wire
        self._counters = counters
        self._ratelog = ratelog

    async def answer(self, cid: str, reply_to: str | None, kind: str, body: Any, code: int, message: str,
                     remote_type: str, headers: dict[str, str] | None = None) -> None:
        """Answer a request: resolve it here, or send the answer to the requesting node."""
        failure_type = remote_type if remote_type in _FAILURES else "RECIPIENT_FAILURE"
        try:
            hdrs = check_headers(headers) if headers else {}
        except (TypeError, ValueError) as exc:
            # The requester must not wait for its timeout: fail it now; the handler's
            # own log line (it gets the error) says why.
            await self.answer(cid, reply_to, "fail", None, 500, f"the reply was refused: {exc}", "InvalidReply")
            raise
        node = self._node
        if reply_to == node.id:
            self.resolve(cid, kind, body, False, hdrs, node.id, code, message, remote_type, failure_type)
            return
        if reply_to is None or not node.answering:
            return
        env = make_envelope(kind="reply" if kind == "reply" else "fail", ns=node.namespace, id=node.next_id(),
                            cid=cid, src=node.id, dst=reply_to, ts=now(), hdr=hdrs)
        if kind != "reply":
            env.err = Failure(type=failure_type, code=code, message=message, remote_type=remote_type)
            body = None
        try:
            await self._wire.unicast(reply_to, env, body)
        except MessageTooLarge as exc:
            await self.answer(cid, reply_to, "fail", None, 413, str(exc), "MessageTooLarge")
        except TypeError as exc:
            await self.answer(cid, reply_to, "fail", None, 500, str(exc), "TypeError")
        except TransportError:
            self._ratelog.warning("reply_lost", "a reply could not be sent; its requester will time out")
        else:
            self._counters.replies += 1

    def resolve_local(self, cid: str, body: Any) -> None:
        """Resolve a request answered by a handler of this very bus (the hot path of local requests)."""
        entry = self._entries.get(cid)
        if entry is None or entry.future.done():
            self._counters.count("dropped.late_reply")
            return
        if entry.spec is not None:
            body = reply_body(entry, body, False)
            if body is _INVALID:
                return
        self._counters.replies += 1
        entry.future.set_result((body, None, "", self._node.id, 0.0))

    def fail_local(self, cid: str, error: ReplyError) -> None:
        """Fail a request made on this very bus with ``error`` (its handler here raised)."""
        entry = self._pending.get(cid)
        if entry is None:
            self._counters.count("dropped.late_reply")
            return
        entry.future.set_exception(error)

    def resolve(self, cid: str, kind: str, body: Any, is_json: bool, headers: dict[str, str], sender: str,
                code: int, message: str, remote_type: str, failure_type: str, msg_id: str = "") -> None:
        """Resolve a request with a reply or a failure (``kind``) that reached this node."""
        entry = self._pending.get(cid)
        if entry is None:
            self._counters.count("dropped.late_reply")
            return
        if kind == "reply":
            body = reply_body(entry, body, is_json)
            if body is _INVALID:
                return
            if sender == self._node.id:
                self._counters.replies += 1
            entry.future.set_result((body, headers, msg_id, sender, now()))
            return
        error = _FAILURES.get(failure_type)
        if error is not None:
            entry.future.set_exception(error(message, code=code))
        else:
            entry.future.set_exception(RecipientFailure(message, code=code, remote_type=remote_type))
