"""What the fault tests of every broker share: a counting echo handler and a checked request loop.

:class:`Traffic` runs a bounded background loop of requests and checks, for
every single one, that it ended with its own reply or an error no later than
its timeout plus a margin; :class:`Echo` counts its runs, so a test can assert
that no handler ran twice. Waits are on events, futures and routes, always
bounded; the only sleeps are the traffic's pacing and simulated work.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from addrbus import EventBus, Message, ReplyError, TransportError
from tests.conftest import unique

T = TypeVar("T")
HEARTBEAT = 0.2  # membership heartbeat: a silent node is dropped after three missed beats
MARGIN = 0.5  # how late past its timeout a request may resolve
WAIT = 10.0  # a generous bound on anything that should take milliseconds


class Echo:
    """An echo handler that counts its runs per message id and per body."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.bodies: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None  # holds bodies starting "held" until set
        self.delay = 0.0  # up to this many seconds of simulated work per message
        self._arrivals: list[tuple[int, asyncio.Future[None]]] = []

    def register(self, bus: EventBus, address: str) -> None:
        async def echo(msg: Message[str]) -> str:
            self.runs[msg.id] += 1
            self.bodies[msg.body] += 1
            for n, future in self._arrivals:
                if sum(self.runs.values()) >= n and not future.done():
                    future.set_result(None)
            if self.gate is not None and msg.body.startswith("held"):
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(random.uniform(0, self.delay))  # simulated work, not synchronisation
            return msg.body

        bus.consumer(address, echo, max_queue=20_000, concurrency=20_000)

    async def arrived(self, n: int) -> None:
        """Wait until the handler has started ``n`` runs."""
        if sum(self.runs.values()) < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._arrivals.append((n, future))
            await asyncio.wait_for(future, WAIT)

    def assert_no_duplicates(self) -> None:
        twice = {key: n for key, n in self.runs.items() if n > 1}
        assert not twice, f"handler ran more than once for message ids {twice}"
        twice = {key: n for key, n in self.bodies.items() if n > 1}
        assert not twice, f"handler ran more than once for bodies {twice}"


class States:
    """Record a bus's transport states, with their loop times, through ``on_transport_state``."""

    def __init__(self, bus: EventBus) -> None:
        self.seen: list[tuple[str, float]] = []
        self._events: dict[str, asyncio.Event] = {}
        bus.on_transport_state(self)

    def __call__(self, state: str) -> None:
        self.seen.append((state, asyncio.get_running_loop().time()))
        self._events.setdefault(state, asyncio.Event()).set()

    async def wait(self, state: str, limit: float = WAIT) -> float:
        """Wait until ``state`` is reached; return the loop time it was reached at."""
        await asyncio.wait_for(self._events.setdefault(state, asyncio.Event()).wait(), limit)
        return [at for name, at in self.seen if name == state][-1]


class Traffic:
    """A bounded background loop of requests, each checked against its own timeout.

    ``workers`` loops each send one request at a time with ``timeout`` and a
    unique body, and record how it ended. A request that resolves later than
    ``timeout + margin``, a reply that is not its own body, or a worker still
    waiting when the traffic stops fails the test in :meth:`check`.
    """

    def __init__(
        self, bus: EventBus, address: str, *, timeout: float = 0.5, workers: int = 4,
        max_requests: int = 50_000, max_seconds: float = 40.0, pace: float = 0.005, margin: float = MARGIN,
    ) -> None:
        self.bus, self.address, self.timeout, self.margin = bus, address, timeout, margin
        self.workers, self.max_requests, self.max_seconds, self.pace = workers, max_requests, max_seconds, pace
        self.outcomes: Counter[str] = Counter()
        self.late: list[tuple[str, float]] = []
        self.wrong: list[tuple[str, Any]] = []
        self.worst = 0.0
        self.sent = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ok_waiters: list[tuple[float, int, asyncio.Future[float]]] = []
        self.lost: LostFutures | None = None
        self.unread = 0  # futures of requests that ended with a transport error, left holding their timeout

    async def __aenter__(self) -> Traffic:
        loop = asyncio.get_running_loop()
        self.lost = LostFutures()
        until = loop.time() + self.max_seconds
        self._tasks = [loop.create_task(self._worker(i, until)) for i in range(self.workers)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.lost is not None:
            self.unread = self.lost.close()
            self.lost = None

    async def _worker(self, index: int, until: float) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while not self._stop.is_set() and self.sent < self.max_requests and loop.time() < until:
            self.sent += 1
            body = f"w{index}-{n}"
            n += 1
            start = loop.time()
            try:
                reply = await self.bus.request(self.address, body, timeout=self.timeout)
            except (ReplyError, TransportError) as exc:
                outcome = type(exc).__name__
            else:
                outcome = "ok"
                if reply != body:
                    outcome = "wrong"
                    self.wrong.append((body, reply))
            end = loop.time()
            self.outcomes[outcome] += 1
            self.worst = max(self.worst, end - start)
            if end - start > self.timeout + self.margin:
                self.late.append((outcome, end - start))
            if outcome == "ok":
                self._succeeded(start, end)
            await asyncio.sleep(self.pace)

    def _succeeded(self, start: float, end: float) -> None:
        for after, count, future in self._ok_waiters:
            if not future.done() and start >= after and self.outcomes["ok"] >= count:
                future.set_result(end)

    async def ok_after(self, after: float, limit: float, count: int = 0) -> float:
        """Wait for a request started at ``after`` or later to succeed; return when it did.

        With ``count``, also wait until ``count`` requests in all have succeeded.
        """
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._ok_waiters.append((after, count, future))
        try:
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise AssertionError(f"no request succeeded within {limit} s; so far {dict(self.outcomes)}") from None

    async def flowing(self, more: int = 20) -> None:
        """Wait until ``more`` further requests have succeeded."""
        await self.ok_after(0.0, WAIT, self.outcomes["ok"] + more)

    async def check(self) -> Counter[str]:
        """Stop the traffic and assert that every request resolved, in time, with its own reply."""
        self._stop.set()
        # A worker is at most one request (timeout + margin) and one pace away from noticing.
        done, hung = await asyncio.wait(self._tasks, timeout=self.timeout + self.margin + self.pace + 0.2)
        for task in hung:
            task.cancel()
        assert not hung, f"{len(hung)} requests still unresolved past their timeout; outcomes {dict(self.outcomes)}"
        for task in done:
            task.result()  # an unexpected exception fails the test here
        assert not self.late, f"requests resolved past timeout + {self.margin} s: {self.late[:10]}"
        assert not self.wrong, f"requests got another request's reply: {self.wrong[:10]}"
        assert self.bus.stats()["pending_requests"] == 0
        return self.outcomes


@asynccontextmanager
async def two_buses(url: str, *, heartbeat: float = HEARTBEAT) -> AsyncIterator[tuple[EventBus, EventBus, Echo, str]]:
    """Start a responder (an :class:`Echo`) and a requester on one namespace; yield both, routed."""
    namespace, address = unique("ns"), unique("echo")
    echo = Echo()
    responder = EventBus(url, namespace=namespace, heartbeat=heartbeat, stop_timeout=1.0)
    echo.register(responder, address)
    requester = EventBus(url, namespace=namespace, heartbeat=heartbeat, stop_timeout=1.0)
    async with responder, requester:
        await requester.wait_for_handlers(address, 1, timeout=WAIT)
        yield requester, responder, echo, address


async def timed(coro: Awaitable[T]) -> tuple[str, float]:
    """Await ``coro``; return how it ended (``ok`` or the error's type name) and how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        await coro
        outcome = "ok"
    except (ReplyError, TransportError) as exc:
        outcome = type(exc).__name__
    return outcome, loop.time() - start


def now() -> float:
    return asyncio.get_running_loop().time()


class LostFutures:
    """Collect the bus errors that asyncio reports as "never retrieved"; pass anything else on.

    A request whose frame is stuck in the transport past its deadline gets the
    transport's late error (``DeliveryUnknown``) while its future already holds
    ``RequestTimeout``, which nobody reads (see
    :func:`test_a_request_stuck_past_its_deadline_fails_with_request_timeout`).
    The fault tests count these instead of failing on them whenever the garbage
    collector happens to run.
    """

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._loop = asyncio.get_running_loop()
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._handle)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ReplyError) and "never retrieved" in context.get("message", ""):
            self.errors.append(exc)
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def close(self) -> int:
        """Collect garbage, stop spying and return how many were seen."""
        gc.collect()
        self._loop.set_exception_handler(self._previous)
        return len(self.errors)


# -- the server dies -------------------------------------------------------------------------
