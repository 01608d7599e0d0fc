"""Startup: start() and stop() taking turns on one loop, and the transport started within ``start_timeout``.

A service is often started before its broker (a container beside it, a host booting):
rather than die with a traceback, ``start()`` tries again with capped, jittered
exponential backoff, logging each failure, until the deadline. Only the transport's
own start is retried: a bad URL or option fails at once, in ``EventBus(...)``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .._exceptions import BusError, BusStopped, ConfigError, TransportError
from .._loops import watch_end
from ..transports._backoff import Backoff
from ..transports.registry import redact
from .checks import check_loop

if TYPE_CHECKING:
    from ..transports.base import FrameHandler, Transport
    from .node import Node

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

#: Delays between attempts: 0.1 s doubling to 2 s, each drawn from its upper half.
FIRST_DELAY, MAX_DELAY = 0.1, 2.0
_BUSY_ELSEWHERE = "this bus is being started or stopped on another event loop: call it from that loop"


class Startup:
    """Start one transport for a node, trying again until ``timeout`` seconds have passed (0: one attempt).

    :raises ConfigError: for a ``timeout`` that is negative, NaN or infinite.
    """

    def __init__(self, node: Node, transport: Transport, timeout: float) -> None:
        if not 0 <= timeout < float("inf"):  # also refuses NaN
            raise ConfigError(f"start_timeout must be a finite number of seconds, 0 or more, not {timeout!r}")
        self.timeout = timeout
        self._node = node
        self._transport = transport
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._abandoned: asyncio.Future[None] | None = None  # set once an attempt failed and a retry is due
        self._loop_watch: asyncio.Task[None] | None = None

    def lock(self) -> asyncio.Lock:
        """Return the lock that makes concurrent start() and stop() calls take turns (one per loop).

        :raises BusError: if the bus runs, or is being started or stopped, on another event loop.
        """
        loop = asyncio.get_running_loop()
        if self._node.running:
            check_loop(self._node)  # its loop has ended, or is another thread's
        if self._lock is None or self._lock[0] is not loop:
            if self._lock is not None and self._lock[1].locked() and not self._lock[0].is_closed():
                raise BusError(_BUSY_ELSEWHERE)
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    def abandon(self) -> bool:
        """Make a start that is retrying give up (it raises BusStopped); tell whether one was.

        A start still in its first attempt is left alone: ``stop()`` then takes its turn
        after it, as it always has.
        """
        if self._abandoned is None or self._abandoned.done():
            return False
        self._abandoned.set_result(None)
        return True

    async def start(self, on_frame: FrameHandler) -> None:
        """Start the transport, retrying a ``TransportError`` until the deadline; then watch the loop.

        An attempt in progress is never cut short (the transport bounds it by its own
        ``connect_timeout``); the deadline is checked between attempts.

        :raises TransportError: the transport's own error with ``timeout=0``; else one that
            says how long it tried, and the last error.
        :raises BusStopped: if ``abandon()`` was called (by ``stop()``) while it retried.
        """
        try:
            await self._attempts(on_frame)
        finally:
            self._abandoned = None
        self._loop_watch = watch_end(self._loop_ending)

    def _loop_ending(self) -> None:
        # The calls into the bus check only the thread (cheap) until this: once the loop
        # ends (asyncio.run returns), every call takes check_loop's full check, which
        # names the ended loop. A watch that stopped() cancelled is stale: ignore it.
        if self._loop_watch is asyncio.current_task():
            self._node.thread = 0

    def stopped(self) -> None:
        """Stop watching the loop: the bus is stopped."""
        if self._loop_watch is not None:
            self._loop_watch.cancel()
            self._loop_watch = None

    async def _attempts(self, on_frame: FrameHandler) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        backoff = Backoff(FIRST_DELAY, MAX_DELAY)
        where = redact(self._transport.describe())
        node = self._node
        attempt = 1
        while True:
            try:
                await self._transport.start(node.id, node.namespace, on_frame)
            except TransportError as exc:
                if self.timeout == 0:
                    raise
                left = deadline - loop.time()
                if left <= 0:
                    raise TransportError(f"{where} did not start within start_timeout={self.timeout:g} s"
                                         f" ({attempt} attempts); the last error: {exc}") from exc
                delay = min(backoff.next_delay(), left)
                logger.warning("cannot start %s (attempt %d): %s; retrying in %.2f s (start_timeout=%g s)",
                               where, attempt, str(exc).rstrip("."), delay, self.timeout)
                if self._abandoned is None:
                    self._abandoned = loop.create_future()
                # Wake at once if stop() gives up on this start; asyncio.wait never cancels what it waits on.
                await asyncio.wait([self._abandoned], timeout=delay)
            else:
                if self._abandoned is None or not self._abandoned.done():
                    return
                await self._transport.stop()  # up just as stop() was called: stop() wins
            if self._abandoned is not None and self._abandoned.done():
                raise BusStopped(f"start() of {where} gave up after {attempt} attempts: stop() was called")
            attempt += 1
