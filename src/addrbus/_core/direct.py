"""A local request answered within the requester's own call (Python 3.12+).

When the handler of a request is an ``async def`` of its body on this very
bus, has nothing queued, has a run of its concurrency free and the body needs
no validation, the request starts the handler itself as an eager task: no
backlog entry, no runner, and (if it ends without suspending) no entry in the
pending map and no timer. Its reply, or its failure, is the request's outcome
before ``request()`` awaits it.

A handler that suspends goes on as a task of its own (the requester being
cancelled does not cancel it), holding one run of the handler's concurrency,
and the request waits for it as for any other: with its timeout, its
``BusStopped`` when the bus stops, and ``drain()`` waiting for the task.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from .._wire.bodies import BodyInvalid
from .eager import EAGER, Busy, Starter
from .handlers import handler_name
from .requests import failure, invalid_reply

if TYPE_CHECKING:
    from .._counters import Counters
    from .._exceptions import ReplyError
    from .._wire.bodies import BodySpec
    from .node import Node
    from .registration import Registration
    from .requests import PendingRequests, Replies

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

#: What :meth:`Direct.call` returns for a request its handler answered within the call.
ANSWERED = cast("asyncio.Future[Any]", object())


class Direct(Starter):
    """Start runners (as :class:`Starter`), and requests' local handlers in the requester's call."""

    __slots__ = ("_counters", "_node", "_pending", "_replies", "answer", "cid")

    def __init__(self, out: Busy, node: Node, pending: PendingRequests, replies: Replies, counters: Counters,
                 *, eager: bool = EAGER) -> None:
        super().__init__(out, eager=eager)
        self._node = node
        self._pending = pending
        self._replies = replies
        self._counters = counters
        #: The correlation id of the last request :meth:`call` took.
        self.cid = ""
        #: What the last request answered at once gets (:meth:`outcome`): its reply, or its failure.
        self.answer: tuple[Any, None, str, str, float] | ReplyError | None = None

    def call(self, reg: Registration, body: Any, timeout: float, spec: BodySpec | None,
             address: str) -> asyncio.Future[Any] | None:
        """Run ``reg``'s handler for a request; return what to await, or None if the request must be queued.

        That is :data:`ANSWERED` if the handler ended within this call (:meth:`outcome`
        says how), or the request's future, whose correlation id is :attr:`cid`.
        """
        if not (self.ready() and reg.takes(body)):
            return None
        task = self._start(reg, body)
        node = self._node
        if not task.done():
            cid = self.cid = node.next_id()
            future = self._pending.add(cid, timeout, node.id, spec, address)
            reg.tasks.add(task)
            task.add_done_callback(partial(self._ended, reg, cid))
            return future
        reg.release()
        self.cid = ""  # answered: no correlation id was needed
        try:
            result = task.result()
        except BaseException:  # noqa: BLE001 - the handler's own error (CancelledError too), for its requester
            self.answer = self._error(reg, task)
            return ANSWERED
        if spec is not None:
            try:
                result = spec.from_python(result)
            except BodyInvalid as exc:
                self.answer = invalid_reply(exc)
                return ANSWERED
        self._counters.replies += 1
        self.answer = (result, None, "", node.id, 0.0)
        return ANSWERED

    def _start(self, reg: Registration, body: Any) -> asyncio.Task[Any]:
        """Run ``reg``'s handler of ``body`` eagerly, holding one of its runs (:meth:`ready` said so)."""
        reg.claim()
        self._counters.delivered += 1
        try:
            return self.eager_task(reg.handler(body))
        except BaseException:  # KeyboardInterrupt or SystemExit from the handler: the task re-raised it
            reg.release()
            raise

    def outcome(self) -> tuple[Any, None, str, str, float]:
        """Return the reply of the request :meth:`call` answered at once, as a future would, or raise its failure."""
        answer, self.answer = self.answer, None
        if isinstance(answer, tuple):
            return answer
        assert answer is not None
        self._counters.count(f"failures.{answer.failure_type.value.lower()}")
        raise answer

    def _error(self, reg: Registration, task: asyncio.Task[Any]) -> ReplyError:
        """Log and count that a handler's task raised; return the failure its requester gets."""
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()  # cancelled: by the handler itself
        self._counters.count("failures.handler")
        logger.error("handler %s for %r raised", handler_name(reg.handler), reg.address, exc_info=exc)
        return failure(str(exc), 500, type(exc).__name__)

    def _ended(self, reg: Registration, cid: str, task: asyncio.Task[Any]) -> None:
        """A handler that had suspended ended: release its run and settle its request."""
        reg.tasks.discard(task)
        reg.release()
        if task.cancelled() and task.cancelling():
            return  # stop() gave up on it, and failed the request (BusStopped) before
        if task.cancelled() or task.exception() is not None:
            self._replies.fail_local(cid, self._error(reg, task))
        else:
            self._replies.resolve_local(cid, task.result())
