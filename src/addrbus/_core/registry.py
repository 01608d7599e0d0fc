"""The local handlers: adding and removing them, and waiting for the ones still running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._addresses import address_of
from .._patterns import RESERVED, TAP_PREFIX, check_registered, group_key
from .checks import check_loop
from .handlers import DEFAULT_OVERFLOW_TIMEOUT, PASS_INLINE, Overflow, inspect_handler
from .registration import Registration

if TYPE_CHECKING:
    from .._counters import Counters
    from .._message import Message
    from .._ratelog import RateLimitedLog
    from .._wire.bodies import BodySpec
    from .eager import Starter
    from .intercept import Interceptors
    from .membership import Membership
    from .node import Node
    from .requests import Replies
    from .routing import Router

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

#: Seconds ``stop()`` gives cancelled handlers to end before it abandons them.
CANCEL_GRACE = 0.5


class Registry:
    """Add and remove handlers, keeping routing and membership told; the host of every Registration."""

    def __init__(self, node: Node, router: Router, membership: Membership, replies: Replies, counters: Counters,
                 ratelog: RateLimitedLog, starter: Starter, hooks: Interceptors, *, max_queue: int,
                 concurrency: int) -> None:
        self.node = node
        #: The bus's interceptors: their inbound hooks run before every handler.
        self.hooks = hooks
        #: Starts the handlers' runners (eagerly on Python 3.12+).
        self.starter = starter
        self.counters = counters
        self.ratelog = ratelog
        self.replies = replies
        #: Called when the bus stops: streams waiting for a message wake up.
        self.wakers: set[Callable[[], None]] = set()
        self._router = router
        self._membership = membership
        self.max_queue = max_queue
        self.concurrency = concurrency
        self._detached: list[Registration] = []  # unregistered, but still finishing work
        self._abandoned: set[asyncio.Task[None]] = set()  # RecipientGone answers for requests stop() gave up on

    def register(self, address: Any, handler: Callable[..., Any], body_default: bool, max_queue: int | None,
                 concurrency: int | None, localns: dict[str, Any] | None,
                 overflow: Overflow | None = None, group: str | None = None, *, system: bool = False) -> Registration:
        """Register ``handler`` at ``address``, called as its signature asks (``system``: the bus's own).

        :raises ValueError: for a bad address, or one of the bus's own (``_addrbus.sys.``).
        :raises ConfigError: for a handler that cannot be called with one message.
        :raises BusError: when called on a running bus from outside its event loop.
        """
        pass_mode, spec = inspect_handler(handler, body_default, localns)
        return self._add(address, handler, pass_mode, spec, max_queue, concurrency, overflow, group, system)

    def register_sink(self, address: str, sink: Callable[[Message[Any]], Any], spec: BodySpec,
                      max_queue: int, overflow: Overflow | None = None, group: str | None = None,
                      tap: bool = False) -> Registration:
        """Register a stream's ``sink``: it takes each Message inline, typed by ``spec`` (``tap``: copies only).

        The sink returns None, or an awaitable that holds the next message back (a full stream that waits).
        """
        if tap:
            return self._add(TAP_PREFIX + address, sink, PASS_INLINE, spec, max_queue, 1, overflow, system=True)
        return self._add(address, sink, PASS_INLINE, spec, max_queue, 1, overflow, group)

    def _add(self, address: Any, handler: Callable[..., Any], pass_mode: int, spec: BodySpec,
             max_queue: int | None, concurrency: int | None, overflow: Overflow | None = None,
             group: str | None = None, system: bool = False) -> Registration:
        addr = check_registered(address_of(address))
        if addr.startswith(RESERVED) and not system:
            prefix = next(p for p in RESERVED if addr.startswith(p))
            raise ValueError(f"{addr!r} is an address of the bus's own ({prefix}...): pick another name")
        if group is not None:
            addr = group_key(addr, group)  # registered and announced under it; see Router.pick_group
        if self.node.running:
            # Peers must hear of the new handler, which takes the bus's loop.
            check_loop(self.node)
        reg = Registration(
            self, addr, handler, pass_mode=pass_mode, spec=spec,
            max_queue=max_queue or self.max_queue, concurrency=concurrency or self.concurrency,
            overflow=overflow or ("wait", DEFAULT_OVERFLOW_TIMEOUT),
        )
        self._router.add_local(reg)
        self._membership.changed(addr)
        return reg

    def decorator_or_registration(self, address: Any, handler: Callable[..., Any] | None, body_default: bool,
                                  max_queue: int | None, concurrency: int | None,
                                  localns: dict[str, Any], overflow: Overflow | None = None,
                                  group: str | None = None) -> Callable[[F], F] | Registration:
        """Register ``handler`` now, or (``handler`` None) return a decorator that registers its function."""
        if handler is not None:
            return self.register(address, handler, body_default, max_queue, concurrency, localns, overflow, group)
        addr = check_registered(address_of(address))  # fail at the decorator line, not later
        if group is not None:
            group_key(addr, group)

        def decorate(fn: F) -> F:
            reg = self.register(address, fn, body_default, max_queue, concurrency, localns, overflow, group)
            try:
                fn.registration = reg  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return fn

        return decorate

    def unregister(self, reg: Registration) -> None:
        """Remove ``reg`` from routing; its backlog is still handled (and waited for by ``drain``)."""
        self._router.remove_local(reg)
        if reg.tasks:
            self._detached = [*self._detached, reg]
        self._membership.changed(reg.address)

    def wake_all(self) -> None:
        """Wake every stream waiting for a message (the bus stopped)."""
        for wake in list(self.wakers):
            wake()

    def abandoned(self, cid: str, reply_to: str) -> None:
        """Answer request ``cid`` with ``RecipientGone``: stop() cancelled its handling here."""
        answer = self.replies.answer(cid, reply_to, "fail", None, 503, "the node handling it stopped before it"
                                     " answered", "RECIPIENT_GONE")
        task = asyncio.get_running_loop().create_task(answer)
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _cancel(self, tasks: set[asyncio.Task[None]]) -> None:
        """Cancel ``tasks``; abandon, with a warning each, those still running ``CANCEL_GRACE`` seconds later."""
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=CANCEL_GRACE)
        if self._abandoned:  # their requesters hear it before this node says goodbye
            await asyncio.wait(set(self._abandoned), timeout=CANCEL_GRACE)
        if stuck:
            owners = {t: r for regs in self._router.local.values() for r in regs for t in r.tasks}
            owners.update({t: r for r in self._detached for t in r.tasks})
            for task in stuck:
                reg = owners.get(task)
                logger.warning("a handler %s did not stop when cancelled; stop() abandoned it",
                               "of an unknown registration" if reg is None else f"at {reg.address!r} ({reg!r})")

    async def drain(self, timeout: float | None, cancel: bool) -> bool:
        """Wait until every message handed to local handlers has been handled; False if ``timeout`` came first.

        With ``cancel``, the runs still going at the timeout are cancelled.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # Called from inside a handler, it must not wait for its own run.
        me = asyncio.current_task()
        while True:
            tasks = {t for regs in self._router.local.values() for r in regs for t in r.tasks}
            tasks.update(t for r in self._detached for t in r.tasks)
            tasks.discard(me)
            self._detached = [r for r in self._detached if r.tasks]
            if not tasks:
                return True
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                if cancel:
                    await self._cancel(tasks)
                return False
            await asyncio.wait(tasks, timeout=left)
