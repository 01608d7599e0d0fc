"""The bus's way in as users call it: consumer, on, stream and schedule.

A part of :class:`~addrbus.EventBus` with no state of its own: the bus composes
the registry of local handlers and the job scheduler these methods use.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ._addresses import address_of
from ._core.checks import MAX_TIMEOUT
from ._core.handlers import DEFAULT_OVERFLOW_TIMEOUT, check_overflow
from ._core.stream import Stream
from ._exceptions import BusNotRunning, RequestTimeout
from ._jobs import JobScheduler
from ._patterns import check_registered, group_key

if TYPE_CHECKING:
    from ._core.membership import Membership
    from ._core.registration import Registration
    from ._core.registry import Registry
    from ._jobs import Job
    from ._message import Message

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
H = Callable[..., Any]
OverflowPolicy = Literal["wait", "drop_new", "drop_oldest"]


class Registering:
    """Register handlers, streams and jobs: the registering methods of :class:`~addrbus.EventBus`."""

    _in: Registry
    _scheduler: JobScheduler | None
    _stop_timeout: float
    _membership: Membership

    if TYPE_CHECKING:  # what EventBus, which composes this part, provides (the scheduler's JobHost)

        @property
        def running(self) -> bool: ...
        @property
        def node_id(self) -> str: ...
        def nodes(self) -> dict[str, dict[str, int]]: ...

    @overload
    def consumer(self, address: Any, handler: None = None, *, max_queue: int | None = None,
                 concurrency: int | None = None, overflow: OverflowPolicy = "wait",
                 overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT, group: str | None = None) -> Callable[[F], F]: ...
    @overload
    def consumer(self, address: Any, handler: H, *, max_queue: int | None = None,
                 concurrency: int | None = None, overflow: OverflowPolicy = "wait",
                 overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT, group: str | None = None) -> Registration: ...

    def consumer(self, address: Any, handler: H | None = None, *, max_queue: int | None = None,
                 concurrency: int | None = None, overflow: OverflowPolicy = "wait",
                 overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT,
                 group: str | None = None) -> Callable[[F], F] | Registration:
        """Register a handler at ``address``; it receives the ``Message`` (or what its annotation asks).

        Used as ``bus.consumer(address, handler)`` it returns the
        :class:`Registration`; as ``@bus.consumer(address)`` it returns the
        function unchanged (its registration is ``fn.registration``).
        The handler's return value is the reply to a request.

        When its backlog (``max_queue``) is full, ``overflow`` decides:
        ``"wait"`` (a local publish, send or request waits for room, at most
        ``overflow_timeout`` seconds, then drops it), ``"drop_new"`` or
        ``"drop_oldest"``. Messages from other nodes never wait: under
        ``"wait"`` they drop as under ``"drop_new"``. A dropped request is
        answered at once (``RecipientFailure`` 503).

        Raises:
            ValueError: for a bad address.
            ConfigError: for a handler that cannot be called with one message, or a bad ``overflow`` setting.
        """
        localns = sys._getframe(1).f_locals  # noqa: SLF001 - the caller's names resolve its annotations
        return self._in.decorator_or_registration(address, handler, False, max_queue, concurrency, localns,
                                                  check_overflow(overflow, overflow_timeout), group)

    @overload
    def on(self, address: Any, handler: None = None, *, max_queue: int | None = None,
           concurrency: int | None = None, overflow: OverflowPolicy = "wait",
           overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT, group: str | None = None) -> Callable[[F], F]: ...
    @overload
    def on(self, address: Any, handler: H, *, max_queue: int | None = None,
           concurrency: int | None = None, overflow: OverflowPolicy = "wait",
           overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT, group: str | None = None) -> Registration: ...

    def on(self, address: Any, handler: H | None = None, *, max_queue: int | None = None,
           concurrency: int | None = None, overflow: OverflowPolicy = "wait",
           overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT,
           group: str | None = None) -> Callable[[F], F] | Registration:
        """Register a handler at ``address`` that receives the body, typed by its annotation.

        As :meth:`consumer`, but an unannotated parameter gets the body, not the Message.
        """
        localns = sys._getframe(1).f_locals  # noqa: SLF001 - the caller's names resolve its annotations
        return self._in.decorator_or_registration(address, handler, True, max_queue, concurrency, localns,
                                                  check_overflow(overflow, overflow_timeout), group)

    def stream(self, address: Any, body_type: Any = None, *, max_queue: int | None = None,
               limit: int | None = None, overflow: OverflowPolicy = "wait",
               overflow_timeout: float = DEFAULT_OVERFLOW_TIMEOUT, group: str | None = None,
               tap: bool = False) -> Stream:
        """Return an async iterator of the messages at ``address``; unregisters when left.

        Use as ``async with bus.stream(a) as messages: async for msg in messages``
        or just ``async for msg in bus.stream(a)``. With ``limit=N`` it ends
        after N messages (and stops taking more as soon as N have arrived).
        ``overflow`` and ``overflow_timeout`` act as for :meth:`consumer`.

        With ``tap=True`` the stream *watches*: it gets a copy of every publish,
        send and request to ``address`` (or to what the pattern matches) from any
        node, and is never chosen for a send or a request, whose outcome it cannot
        change. A copy is a publish (it cannot be answered); its ``tap`` header says
        what the original was (``msg.headers["addrbus-tap"]``: ``publish``, ``send``
        or ``request``).

        Raises:
            ValueError: for a bad address, a ``limit`` that is not a positive int, or a tap in a group.
            ConfigError: for a bad ``overflow`` setting.
        """
        addr = check_registered(address_of(address))
        if group is not None:
            if tap:
                raise ValueError("a tap sees every message: it cannot be in a group")
            group_key(addr, group)  # refuse a bad group here, not when the stream opens
        return Stream(self._in, addr, body_type, max_queue or self._in.max_queue, limit,
                      check_overflow(overflow, overflow_timeout), group, tap)

    @overload
    async def wait_for(self, address: Any, *, timeout: float = 30.0, body_type: type[T],
                       where: Callable[[Message[T]], bool] | None = None) -> Message[T]: ...
    @overload
    async def wait_for(self, address: Any, *, timeout: float = 30.0, body_type: None = None,
                       where: Callable[[Message[Any]], bool] | None = None) -> Message[Any]: ...

    async def wait_for(self, address: Any, *, timeout: float = 30.0, body_type: Any = None,
                       where: Callable[[Message[Any]], bool] | None = None) -> Message[Any]:
        """Return the next message delivered to ``address`` (the first for which ``where(msg)`` is true).

        A handler of the address while it waits, like a stream: register it
        before whatever will send the message. Messages ``where`` turns down
        are dropped.

        Raises:
            ValueError: for a bad address or timeout.
            RequestTimeout: if no such message arrived within ``timeout`` seconds.
            BusNotRunning: if the bus is not running, or stopped meanwhile.
        """
        if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN and infinity
            raise ValueError(f"timeout must be a positive, finite number of seconds, at most {MAX_TIMEOUT:,}")
        addr = check_registered(address_of(address))
        if not self.running:
            raise BusNotRunning("the bus is not running: use 'async with bus:' or 'await bus.start()' first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with Stream(self._in, addr, body_type, self._in.max_queue) as messages:
            while True:
                try:
                    msg = await messages.get(max(deadline - loop.time(), 0.0))
                except TimeoutError:
                    raise RequestTimeout(f"no message at {addr!r} within {timeout} s", code=-1) from None
                if where is None or where(msg):
                    return msg

    # -- scheduling ----------------------------------------------------------------

    @overload
    def schedule(self, trigger: Any, fn: None = None, *, name: str | None = None,
                 singleton: bool = False) -> Callable[[F], F]: ...
    @overload
    def schedule(self, trigger: Any, fn: H, *, name: str | None = None, singleton: bool = False) -> Job: ...

    def schedule(self, trigger: Any, fn: H | None = None, *, name: str | None = None,
                 singleton: bool = False) -> Callable[[F], F] | Job:
        """Run ``fn`` on ``trigger`` (``every(10).minutes``, ``cron("*/5 * * * *")``, ``at(when)``).

        Used as ``@bus.schedule(trigger)`` it returns the function unchanged
        (its job is ``fn.job``); as ``bus.schedule(trigger, fn)`` it returns the
        :class:`Job`. Jobs start and stop with the bus. With ``singleton=True``
        one node among all that registered the job runs each occurrence.

        Raises:
            ConfigError: for a bad trigger, or if APScheduler is not installed.
        """
        if self._scheduler is None:
            self._scheduler = JobScheduler(self, stop_timeout=self._stop_timeout, heartbeat=self._membership.heartbeat)
        added: Callable[[F], F] | Job = self._scheduler.add(trigger, fn, name=name, singleton=singleton)
        return added

    def jobs(self) -> list[Job]:
        """Return the scheduled jobs, with their next run times."""
        return [] if self._scheduler is None else self._scheduler.jobs()
