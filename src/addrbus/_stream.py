"""bus.stream(address): the messages at an address as an async iterator."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from ._codec import spec_for
from ._exceptions import BusNotRunning

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

    from ._bus import EventBus
    from ._consumer import Registration
    from ._message import Message

logger = logging.getLogger("addrbus")


class Stream:
    """Receive the messages sent or published to one address, in order.

    Registered while iterated (or inside ``async with``); unregistered when
    the ``async with`` block or the iteration ends. Requests arrive like any
    message: answer them with ``await msg.reply(...)``.
    """

    def __init__(self, bus: EventBus, address: str, body_type: Any, max_queue: int) -> None:
        self.address = address
        self._bus = bus
        self._spec = spec_for(Any if body_type is None else body_type)
        self._max_queue = max_queue
        self._items: collections.deque[Message[Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._reg: Registration | None = None
        self.dropped = 0

    def _push(self, msg: Message[Any]) -> None:
        if len(self._items) >= self._max_queue:
            self.dropped += 1
            self._bus._count("dropped.overflow")
            return
        self._items.append(msg)
        self._ready.set()

    def _open(self) -> None:
        if self._reg is None:
            bus = self._bus
            self._reg = bus._register(self.address, self._push, False, self._max_queue, 1, None, sink=self._spec)
            bus._on_stop.add(self._ready.set)

    def close(self) -> None:
        """Unregister; messages already received can still be read."""
        if self._reg is not None:
            self._bus._on_stop.discard(self._ready.set)
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
            while True:
                yield await self.get()
        finally:
            self.close()

    async def get(self, timeout: float | None = None) -> Message[Any]:
        """Return the next message, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: if none arrived in time.
            BusNotRunning: if the bus stopped.
        """
        self._open()
        while not self._items:
            if not self._bus.running:
                raise BusNotRunning("the bus stopped")
            self._ready.clear()
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._items.popleft()
