"""bus.stream(address): the messages at an address as an async iterator."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._exceptions import BusNotRunning
from .._message import make_message
from .._patterns import TAP_PREFIX
from .._wire.bodies import BodySpec, spec_for
from .handlers import DEFAULT_OVERFLOW_TIMEOUT, Overflow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

    from .._counters import Counters
    from .._message import Message
    from .node import Node
    from .registration import Registration


class StreamHost(Protocol):
    """What a stream needs of the bus: a sink registration, the counters, and a wake-up at stop."""

    node: Node
    counters: Counters
    #: Called when the bus stops, so that a stream waiting for a message wakes up.
    wakers: set[Callable[[], None]]

    def register_sink(self, address: str, sink: Callable[[Message[Any]], Any], spec: BodySpec,
                      max_queue: int, overflow: Overflow | None = None, group: str | None = None,
                      tap: bool = False) -> Registration:
        """Register ``sink`` to take each Message at ``address`` inline, typed by ``spec``."""


class Stream:
    """Receive the messages sent or published to one address, in order.

    Registered while iterated (or inside ``async with``); unregistered when
    the ``async with`` block or the iteration ends. Requests arrive like any
    message: answer them with ``await msg.reply(...)``. With ``limit``, the
    stream unregisters once it has received that many, and its iteration ends
    once it has yielded them.
    """

    def __init__(self, host: StreamHost, address: str, body_type: Any, max_queue: int,
                 limit: int | None = None, overflow: Overflow = ("wait", DEFAULT_OVERFLOW_TIMEOUT),
                 group: str | None = None, tap: bool = False) -> None:
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"limit must be a positive int or None, not {limit!r}")
        self.address = address
        self._host = host
        self._spec = spec_for(Any if body_type is None else body_type)
        self._max_queue = max_queue
        self._items: collections.deque[Message[Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._reg: Registration | None = None
        self._limit = limit
        self._overflow = overflow
        self._group = group
        #: A tap sees a copy of every message to the address, and takes no part in its round-robin.
        self.tap = tap
        self._space: asyncio.Future[None] | None = None  # holds the registration back while the stream is full
        self._taken = 0  # messages received, towards the limit
        self._yielded = 0
        self.dropped = 0
        self._failing: set[asyncio.Task[None]] = set()

    def _push(self, msg: Message[Any]) -> asyncio.Future[None] | None:
        if self.tap:  # a copy: it shows the address its original went to
            msg = make_message(msg.body, msg.address[len(TAP_PREFIX):], msg.headers, msg.id, None, None, msg.sender,
                               msg.timestamp, None)
        items = self._items
        if len(items) >= self._max_queue:
            policy = self._overflow[0]
            if policy == "drop_new":
                self._drop(msg)
                return None
            if policy == "drop_oldest":
                self._drop(items.popleft())
        items.append(msg)
        self._ready.set()
        self._taken += 1
        if self._limit is not None and self._taken >= self._limit:
            # Enough: stop taking messages now, so sends go to other handlers.
            asyncio.get_running_loop().call_soon(self.close)
        elif len(items) >= self._max_queue and self._overflow[0] == "wait":
            # Full: hold the next message back until get() takes one; the
            # registration's backlog fills, and local senders wait for room there.
            self._space = asyncio.get_running_loop().create_future()
            return self._space
        return None

    def _drop(self, msg: Message[Any]) -> None:
        self.dropped += 1
        self._host.counters.count("dropped.overflow")
        if msg.reply_to is not None and msg.correlation_id is not None:
            self._host.counters.count("failures.overflow")
            task = asyncio.get_running_loop().create_task(
                msg.fail(503, f"the stream at {self.address!r} is full; the request was dropped"))
            self._failing.add(task)
            task.add_done_callback(self._failing.discard)

    def _release(self) -> None:
        space, self._space = self._space, None
        if space is not None and not space.done():
            space.set_result(None)

    @property
    def exhausted(self) -> bool:
        """Tell whether the stream has yielded its ``limit`` messages."""
        return self._limit is not None and self._yielded >= self._limit

    def _open(self) -> None:
        if self._reg is None and not (self._limit is not None and self._taken >= self._limit):
            host = self._host
            self._reg = host.register_sink(self.address, self._push, self._spec, self._max_queue, self._overflow,
                                           self._group, self.tap)
            host.wakers.add(self._ready.set)

    def close(self) -> None:
        """Unregister; messages already received can still be read."""
        self._release()
        if self._reg is not None:
            self._host.wakers.discard(self._ready.set)
            self._reg.unregister()
            self._reg = None

    async def __aenter__(self) -> Stream:
        self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Message[Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message[Any]]:
        self._open()
        try:
            while not self.exhausted:
                yield await self.get()
        finally:
            self.close()

    async def get(self, timeout: float | None = None) -> Message[Any]:
        """Return the next message, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: if none arrived in time.
            BusNotRunning: if the bus stopped.
            StopAsyncIteration: if the stream has yielded its ``limit`` messages.
        """
        if self.exhausted:
            raise StopAsyncIteration
        self._open()
        while not self._items:
            if not self._host.node.running:
                raise BusNotRunning("the bus stopped")
            self._ready.clear()
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        self._yielded += 1
        if self._space is not None:
            self._release()
        return self._items.popleft()
