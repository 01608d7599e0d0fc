"""A registered handler: its bounded backlog and the tasks that run it."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._exceptions import ConfigError
from .._ids import now
from .._patterns import GROUP_SEP, is_pattern
from .._wire.bodies import BodyInvalid, BodySpec
from .eager import EAGER
from .handlers import (
    DEFAULT_OVERFLOW_TIMEOUT,
    PASS_BODY,
    Item,
    Overflow,
    handler_name,
    is_async,
    runner_cancelled,
)
from .invoke import InvokeHost, Invoker

if TYPE_CHECKING:
    from .eager import Starter

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move


class Host(InvokeHost, Protocol):
    """What a registration needs of the bus around it, handed to it at construction."""

    starter: Starter

    def unregister(self, reg: Registration) -> None:
        """Remove ``reg`` from routing; its backlog is still handled."""

    def abandoned(self, cid: str, reply_to: str) -> None:
        """stop() cancelled the handling of request ``cid``: tell its requester (``RecipientGone``) now."""


class Registration(Invoker):
    """A handler registered at an address. ``unregister()`` removes it.

    Messages wait in a bounded backlog (``max_queue``) and start in the order
    they arrived. While a handler is suspended (awaiting I/O) more runs of it
    start, up to ``concurrency`` at once; a handler that never suspends runs
    one message after another with no task per message.
    """

    _host: Host

    def __init__(
        self,
        host: Host,
        address: str,
        handler: Callable[..., Any],
        *,
        pass_mode: int,
        spec: BodySpec,
        max_queue: int,
        concurrency: int,
        overflow: Overflow = ("wait", DEFAULT_OVERFLOW_TIMEOUT),
    ) -> None:
        if max_queue < 1 or concurrency < 1:
            raise ConfigError("max_queue and concurrency must be at least 1")
        policy, self._overflow_timeout = overflow
        self._waits = policy == "wait"
        self._drop_oldest = policy == "drop_oldest"
        self._stuck = False  # a local wait for room timed out: drop at once until there is room
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()  # local callers waiting
        self._held = False  # callers wait for room, or it is stuck: the runner has news for them
        self.address = address
        #: A pattern's or a group's items carry the concrete address last (``(*item, address)``).
        self.pattern = is_pattern(address) or GROUP_SEP in address
        self.handler = handler
        self._host = host
        self._pass = pass_mode
        self._spec = spec
        self._is_async = is_async(handler)
        self._max_queue = max_queue
        self._concurrency = concurrency
        self._backlog: collections.deque[Item] = collections.deque()
        self._runners = 0
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._overflowing = False
        self._check_scheduled = False
        self.active = True
        #: A request may start the handler itself (:mod:`.direct`): an ``async def`` of its body (3.12+).
        self.direct = EAGER and self._pass == PASS_BODY and self._is_async and not self.pattern

    def __repr__(self) -> str:
        state = "" if self.active else " (unregistered)"
        return f"<Registration {self.address!r} -> {handler_name(self.handler)}{state}>"

    def unregister(self) -> None:
        """Remove the handler; messages already in its backlog are still handled."""
        if self.active:
            self.active = False
            self._host.unregister(self)

    @property
    def pending(self) -> int:
        """How many messages wait in the backlog."""
        return len(self._backlog)

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """Return the tasks running this handler now (what ``drain()`` waits for)."""
        return self._tasks

    @property
    def waits(self) -> bool:
        """Tell whether a local caller should wait for room (:meth:`put`) when :meth:`deliver` refused."""
        return self._waits and not self._stuck

    def _run_free(self) -> bool:
        """Tell whether a new message should start a run: none is going, or all are suspended and one is free."""
        runners = self._runners
        return runners == 0 or (self._busy == runners and runners < self._concurrency)

    def takes(self, body: Any) -> bool:
        """Tell whether a direct call may hand ``body`` over now: nothing queued, a run free, nothing to validate."""
        spec = self._spec
        return not self._backlog and self._run_free() and (
            spec.adapter is None or (spec.cls is not None and isinstance(body, spec.cls)))

    def claim(self) -> None:
        """A direct call runs the handler: it holds one run of its concurrency until :meth:`release`."""
        self._runners += 1
        self._busy += 1

    def release(self) -> None:
        """A direct call's run ended: start a runner for what was queued meanwhile."""
        self._runners -= 1
        self._busy -= 1
        if self._backlog and self._run_free():
            self._spawn()

    def deliver(self, item: Item) -> bool:
        """Queue one message without waiting; return False if the backlog is full and it was not queued.

        Under ``drop_oldest`` a full backlog drops its oldest message instead
        (answering it at once if it is a request), and the new one is queued.
        """
        backlog = self._backlog
        if len(backlog) >= self._max_queue:
            if not self._drop_oldest:
                if not self.waits:
                    self.overflow_warning()
                return False  # under "wait", a local caller waits (put) and a network caller drops
            self.overflow_warning()
            self._evict(backlog.popleft())
        backlog.append(item)
        runners = self._runners
        # Start a runner if none is going, or if every runner is suspended inside
        # the handler (so the new message would otherwise wait for I/O it does not need).
        if runners == 0 or (self._busy == runners and runners < self._concurrency):
            self._spawn(item[4] is not None and item[6] == self._host.node.id)  # a request of this bus
        return True

    def overflow_warning(self) -> None:
        """Log, once per episode, that this handler's full backlog drops messages."""
        if not self._overflowing:
            self._overflowing = True
            logger.warning("consumer %s at %r is overflowing (%d queued): dropping messages",
                           handler_name(self.handler), self.address, len(self._backlog))

    def _evict(self, old: Item) -> None:
        host = self._host
        host.counters.count("dropped.overflow")
        cid = old[4]
        if cid is not None:
            host.counters.count("failures.overflow")
            task = asyncio.get_running_loop().create_task(host.replies.answer(
                cid, old[5], "fail", None, 503, f"the consumer of {self.address!r} is overloaded; the request was"
                " dropped", "Overloaded"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def put(self, item: Item) -> bool:
        """Queue ``item`` once the backlog has room, waiting at most ``overflow_timeout`` (and the item's deadline).

        For local callers under the ``wait`` policy, after :meth:`deliver`
        refused. Return False if no room came in time: the item is not queued.
        If the whole ``overflow_timeout`` passed, later messages drop at once
        until the backlog has room again.
        """
        limit = self._overflow_timeout
        if item[8] is not None:
            limit = min(limit, item[8] - now())
        backlog = self._backlog
        if len(backlog) >= self._max_queue and limit > 0:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(room)
            self._held = True
            try:
                async with asyncio.timeout(limit):
                    await room
            except TimeoutError:
                pass
            finally:
                if not room.done():
                    room.cancel()
            if not room.done() or room.cancelled():
                if limit == self._overflow_timeout and not self._stuck:
                    self._stuck = self._held = True
                    logger.warning("consumer %s at %r stayed full for %s s: dropping messages until it has room",
                                   handler_name(self.handler), self.address, limit)
                return False
        elif len(backlog) >= self._max_queue:
            return False
        backlog.append(item)
        if self._run_free():
            self._spawn(local=True)
        return True

    def _freed(self) -> None:
        """A message left the backlog: wake the first local caller waiting for room (skipping any that gave up)."""
        self._stuck, room = False, self._room
        while room:
            waiter = room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        self._held = bool(room)

    def _check_suspended(self) -> None:
        self._check_scheduled = False
        if self._backlog and self._busy == self._runners and self._runners < self._concurrency:
            self._spawn()

    def _spawn(self, local: bool = False) -> None:
        """Start a runner: within the call for a request of this bus (3.12+), else on the next loop turn.

        A publish, a send, a frame from the network is left to a runner that takes a burst in one
        go (a task for each message cost 0.61x the deliveries per CPU second); on 3.11 it stays a
        turn for more.
        """
        self._runners += 1
        starter = self._host.starter
        if local and starter.ready():
            task = starter.eager_task(self._run(False))  # it may have run to its end already
        else:  # on 3.12+ it does not linger: a request arriving then must find the handler free (Direct)
            task = asyncio.get_running_loop().create_task(self._run(not starter.eager))
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, lingers: bool) -> None:
        backlog = self._backlog
        host = self._host
        counters = host.counters
        replies = host.replies
        node = host.node
        handler = self.handler
        spec = self._spec
        spec_cls = spec.cls
        fast = self._pass == PASS_BODY and self._is_async
        intercepted = host.hooks.inbound  # not empty: every message goes the way interceptors see it
        try:
            while backlog or (lingers and await self._linger()):  # a turn more, for the requester just answered
                item = backlog.popleft()
                if self._held:
                    self._freed()
                if backlog and not self._check_scheduled and self._runners < self._concurrency:
                    # If this handler suspends, a sibling should take the next message
                    # meanwhile. Look on the next loop turn: a handler that never
                    # suspends will have emptied the backlog by then, at no cost.
                    self._check_scheduled = True
                    asyncio.get_running_loop().call_soon(self._check_suspended)
                self._busy += 1
                try:
                    # The common case inline: an async handler of the body, nothing
                    # to validate, not expired. It saves a coroutine per message.
                    body = item[0]
                    if fast and not intercepted and (item[8] is None or item[8] >= now()) and (
                        item[1] or spec.adapter is None or (spec_cls is not None and isinstance(body, spec_cls))
                    ):
                        if item[1]:  # JSON off the wire: validate here, not in _invoke's extra coroutine
                            try:
                                body = spec.from_json(body)
                            except BodyInvalid:
                                await self._invoke(item)  # validates again, and answers why it failed
                                continue
                        counters.delivered += 1
                        try:
                            result = await handler(body)
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except BaseException as exc:
                            if runner_cancelled(exc):
                                raise
                            await self._failed(exc, item[4], item[5])
                        else:
                            cid = item[4]
                            if cid is not None:
                                if item[5] == node.id:
                                    replies.resolve_local(cid, result)
                                else:
                                    await replies.answer(cid, item[5], "reply", result, 0, "", "")
                    else:
                        await self._invoke(item)
                except asyncio.CancelledError as exc:
                    # stop() gave up on this run. Where the engine chose this node, the requester cannot
                    # tell who owed the reply: say so from here.
                    if runner_cancelled(exc) and item[4] is not None and item[5] is not None and item[5] != node.id:
                        host.abandoned(item[4], item[5])
                    raise
                finally:
                    self._busy -= 1
            if self._overflowing:
                self._overflowing = False
                logger.info("consumer %s at %r caught up", handler_name(self.handler), self.address)
        finally:
            self._runners -= 1

    async def _linger(self) -> bool:  # one loop turn goes by: did a message come meanwhile? then take it
        await asyncio.sleep(0)
        return bool(self._backlog)
