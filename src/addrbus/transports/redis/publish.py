"""The one ordered, bounded, pipelined PUBLISH path of a redis transport.

Callers append a packed ``PUBLISH`` to an outbox and wait on a future. One
writer task hands the whole outbox to the socket in a single write, and one
reader task matches the replies (receiver counts), in order, to those futures.
So a thousand concurrent sends cost one connection and a handful of writes,
frames from one sender keep their order, and no caller waits on a lock. When
traffic is sequential and the connection idle, the caller writes its frame
itself, saving the hop through the writer task (request/reply latency).

When a call's time is up its future fails: with :class:`TransportError` if
the frame was still in the outbox (it is taken out and never sent), with
:class:`DeliveryUnknown` once it was handed to the socket. Calls with the same
bound expire in the order they were made, so each bound keeps a FIFO of
deadlines and one timer serves them all: a timer per call cost a heap push and
a cancel on every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..._exceptions import DeliveryUnknown, TransportError
from .wire import CRLF

logger = logging.getLogger("addrbus.transports.redis")  # the name users configure; fixed when files move

#: Distinct call bounds (timeouts) that get a FIFO of their own; the rest share a heap.
MAX_BOUNDS = 64

Send = Callable[[list[bytes]], Awaitable[None]]
Read = Callable[[], Awaitable[Any]]


class Refused(TransportError):
    """Redis answered one command with an error (an ACL, a limit); the connection is fine."""


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class Publisher:
    """Queue, write and acknowledge PUBLISH commands over one connection."""

    def __init__(self, max_pending: int, describe: str) -> None:
        self.max_pending = max_pending
        self.describe = describe
        self.is_open = False
        self.errors = 0
        self.delivery_unknown = 0
        self.sent = 0
        self._refused_logged = False  # Redis refused a frame nobody awaits: said once
        self._chunks: list[bytes] = []
        # Futures of PUBLISH calls (a receiver count) and queries (any reply); None for pings.
        self._queued: list[asyncio.Future[Any] | None] = []
        self._inflight: deque[asyncio.Future[Any] | None] = deque()
        # Callers waiting for room, first come first served: a newcomer never
        # overtakes them, or frames of one sender would leave out of order.
        self._space: deque[asyncio.Future[None]] = deque()
        self._granted = 0  # waiters woken with a slot who have not used it yet
        self._wake: asyncio.Future[None] | None = None
        self._closed_reason = "not connected"
        #: A synchronous write to the connection, when one is available.
        self.direct: Callable[[bytes], None] | None = None
        self._solo = True  # the last write carried one frame: traffic is sequential
        # Per bound (``within``), the calls' deadlines in call order; one timer for the earliest.
        self._deadlines: dict[float, deque[tuple[float, asyncio.Future[int]]]] = {}
        # Past MAX_BOUNDS distinct bounds (jittered timeouts), the rest share one heap.
        self._heap: list[tuple[float, int, asyncio.Future[int]]] = []
        self._order = itertools.count()  # ties in the heap: futures do not compare
        self._tracked = 0  # entries in the FIFOs and the heap, answered or not
        self._compact_at = 1024  # compact past this many: twice the live entries at the last compaction, + 1024
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    @property
    def pending(self) -> int:
        """Return how many frames are queued or awaiting their reply."""
        return len(self._queued) + len(self._inflight)

    async def publish(self, head: bytes, frame: bytes, within: float) -> int:
        """Publish ``head + frame`` and return the receiver count Redis replied.

        :raises TransportError: if the frame surely did not leave.
        :raises DeliveryUnknown: if it left but no reply came in ``within`` seconds.
        """
        loop = asyncio.get_running_loop()
        # A deadline on the future instead of asyncio.timeout(): no cancellation
        # of the caller, and _expire knows whether the frame has left.
        deadline = loop.time() + within
        await self._admit(deadline)
        fut: asyncio.Future[int] = loop.create_future()
        wake = self._wake
        if wake is not None and self._solo and not self._inflight and self.direct is not None:
            # Sequential traffic on an idle connection (writer waiting, nothing
            # unanswered, the last write a single frame): write now rather
            # than wake the writer, one loop iteration less per call. Bursts
            # keep going through the writer, whose batches save syscalls.
            # Order holds either way: every earlier frame is on the socket.
            self._inflight.append(fut)
            try:
                self.direct(b"".join((head, frame, CRLF)))
            except Exception as exc:  # a transport already closing: nothing was written
                self._inflight.pop()
                self.errors += 1
                raise TransportError(f"{self.describe}: cannot write ({type(exc).__name__}); frame not sent") from exc
            self.sent += 1
        else:
            self._chunks += (head, frame, CRLF)
            self._queued.append(fut)
            if wake is not None:
                self._wake = None
                wake.set_result(None)
        fifo = self._deadlines.get(within)
        if fifo is None and len(self._deadlines) < MAX_BOUNDS:
            fifo = self._deadlines[within] = deque()
        elif fifo is not None:
            # Replies come in order, so answered calls gather at the head: drop them as we go.
            while fifo and fifo[0][1].done():
                fifo.popleft()
                self._tracked -= 1
        # Waiters for room are served in call order, so deadlines stay sorted in each FIFO.
        if fifo is not None:
            fifo.append((deadline, fut))
        else:
            heapq.heappush(self._heap, (deadline, next(self._order), fut))
        self._tracked += 1
        if self._tracked > self._compact_at:
            self._compact()
        if deadline < self._timer_at:
            self._arm(loop, deadline)
        return await fut

    def _compact(self) -> None:
        """Forget answered calls: memory stays bounded by what is in flight, whatever the bounds."""
        for within, fifo in list(self._deadlines.items()):
            live = [item for item in fifo if not item[1].done()]
            if live:
                fifo.clear()
                fifo.extend(live)
            else:
                del self._deadlines[within]
        self._heap = [item for item in self._heap if not item[2].done()]
        heapq.heapify(self._heap)
        self._tracked = sum(map(len, self._deadlines.values())) + len(self._heap)
        # At least as many more calls as are live before the next one: O(1) a call, amortised.
        self._compact_at = 2 * self._tracked + 1024

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire every call whose deadline has passed; re-arm for the next one."""
        self._timer = None
        self._timer_at = math.inf
        now = loop.time()
        earliest = math.inf
        for within, fifo in list(self._deadlines.items()):
            while fifo:
                deadline, fut = fifo[0]
                if fut.done():
                    fifo.popleft()
                elif deadline <= now:
                    fifo.popleft()
                    self._expire(fut)
                else:
                    earliest = min(earliest, deadline)
                    break
            if not fifo:
                del self._deadlines[within]
        heap = self._heap
        while heap:
            deadline, _, fut = heap[0]
            if not fut.done() and deadline > now:
                earliest = min(earliest, deadline)
                break
            heapq.heappop(heap)
            if not fut.done():
                self._expire(fut)
        self._tracked = sum(map(len, self._deadlines.values())) + len(heap)
        if earliest != math.inf:
            self._arm(loop, earliest)

    async def post(self, head: bytes, frame: bytes, within: float) -> None:
        """Queue ``head + frame`` behind what is queued, and return: nobody awaits its reply (a publish).

        A sequential loop of posts so fills the outbox without a round trip each,
        and the writer hands it over in one write; past ``max_pending`` frames a
        post waits for room. Redis refusing one is counted (``errors``) and logged once.

        :raises TransportError: if the connection is down, or no room came within ``within``.
        """
        await self._admit(asyncio.get_running_loop().time() + within)
        self.ping(head, frame)

    async def _admit(self, deadline: float) -> None:
        """Return once a frame may be queued: the connection is up and, by ``deadline``, there is room.

        :raises TransportError: if not.
        """
        if not self.is_open:
            self.errors += 1
            raise TransportError(f"{self.describe} is {self._closed_reason}; frame not sent")
        if self._space or self._granted or len(self._queued) + len(self._inflight) >= self.max_pending:
            await self._wait_space(deadline)

    def query(self, command: bytes) -> asyncio.Future[Any]:
        """Queue one packed command (``PUBSUB NUMSUB ...``) behind what is queued; return its reply's future.

        It has no deadline of its own: a caller awaits the ``publish`` queued right
        behind it, whose reply comes after this one. Redis' refusal sets :class:`Refused`;
        a closed connection, TransportError.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieved)  # nobody may await it once the connection failed
        if not self.is_open:
            fut.set_exception(TransportError(f"{self.describe} is {self._closed_reason}; query not sent"))
            return fut
        self._chunks += (command, b"", b"")
        self._queued.append(fut)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)
        return fut

    def ping(self, head: bytes, payload: bytes) -> None:
        """Queue a PUBLISH whose reply nobody awaits (the heartbeat, and :meth:`post`)."""
        self._chunks += (head, payload, CRLF)
        self._queued.append(None)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    async def _wait_space(self, deadline: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._space.append(waiter)
        self._wake_space()
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Woken as time ran out: hand the slot to the next in line.
                self._granted -= 1
                self._wake_space()
            else:
                waiter.cancel()
                # _wake_space() may have dropped it already, as a done waiter.
                with contextlib.suppress(ValueError):
                    self._space.remove(waiter)
            if not isinstance(exc, TimeoutError):
                raise
            self.errors += 1
            raise TransportError(
                f"{self.describe}: {self.max_pending} frames pending (max_pending); frame not sent"
            ) from None
        self._granted -= 1
        if not self.is_open:
            self.errors += 1
            raise TransportError(f"{self.describe} is {self._closed_reason}; frame not sent")

    def _expire(self, fut: asyncio.Future[int]) -> None:
        if fut.done():
            return
        try:
            index = self._queued.index(fut)
        except ValueError:
            self.delivery_unknown += 1
            fut.set_exception(DeliveryUnknown(f"{self.describe}: no reply from Redis in time; delivery unknown"))
            return
        # Still in the outbox: take it out, so "not sent" stays true.
        del self._queued[index]
        del self._chunks[3 * index : 3 * index + 3]
        self.errors += 1
        fut.set_exception(TransportError(f"{self.describe}: timed out before the frame was sent"))

    def open(self) -> None:
        """Accept frames again (a connection is up)."""
        self.is_open = True

    def close(self, reason: str) -> None:
        """Refuse new frames and fail every pending one (the connection is gone)."""
        self.is_open = False
        self.direct = None
        self._closed_reason = reason
        for fut in self._queued:
            if fut is not None and not fut.done():
                self.errors += 1
                fut.set_exception(TransportError(f"{self.describe} is {reason}; frame not sent"))
        for fut in self._inflight:
            if fut is not None and not fut.done():
                self.delivery_unknown += 1
                fut.set_exception(DeliveryUnknown(f"{self.describe} is {reason}; delivery unknown"))
        self._chunks.clear()
        self._queued.clear()
        self._inflight.clear()
        self._deadlines.clear()
        self._heap.clear()
        self._tracked = 0
        self._compact_at = 1024
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        self._wake_space()

    def _wake_space(self) -> None:
        free = self.max_pending - len(self._queued) - len(self._inflight) - self._granted
        space = self._space
        while space and (free > 0 or not self.is_open):
            waiter = space.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._granted += 1
                free -= 1

    async def run_writer(self, send: Send) -> None:
        """Hand the outbox to ``send`` whenever it is not empty, forever."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queued:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                chunks, futures = self._chunks, self._queued
                self._chunks, self._queued = [], []
                # In flight from here: a failure of send() may leave any part sent.
                self._inflight.extend(futures)
                self.sent += len(futures)
                self._solo = len(futures) == 1
                await send(chunks)
        finally:
            self._wake = None

    async def run_reader(self, read: Read, reply_error: type[Exception]) -> None:
        """Match each PUBLISH reply read with ``read`` to its caller, forever."""
        while True:
            try:
                reply = await read()
            except reply_error as exc:
                reply = exc
            self.on_reply(reply)

    def on_reply(self, reply: Any) -> None:
        """Match one PUBLISH reply (a receiver count, or the error Redis answered) to its caller.

        :raises TransportError: for a reply nobody asked for (the connection is out of step).
        """
        inflight = self._inflight
        if not inflight:
            raise TransportError(f"{self.describe}: a reply nobody asked for; resynchronising")
        fut = inflight.popleft()
        if fut is None:
            if isinstance(reply, Exception):
                self.errors += 1
                if not self._refused_logged:
                    self._refused_logged = True
                    logger.warning("%s: Redis refused a publish nobody waited for (counted in publish_errors): %s",
                                   self.describe, reply)
        elif not fut.done():
            if isinstance(reply, Exception):
                # Redis refused this one command (an ACL, a limit): the
                # connection itself is fine and the frame was not published.
                self.errors += 1
                fut.set_exception(Refused(f"{self.describe}: Redis refused the frame: {reply}"))
            else:
                fut.set_result(reply)
        if self._space:
            self._wake_space()
