"""Calling a handler for one message, whatever its signature: the body checked, the call, the answer.

:class:`~.registration.Registration` runs the common case (an ``async def``
of a body that needs no validation) inline, and everything else through
:meth:`Invoker._invoke`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._ids import now
from .._message import make_message
from .._threads import run_in_thread
from .._wire.bodies import BodyInvalid
from .handlers import PASS_BODY, PASS_INLINE, PASS_NOTHING, BoundAnswer, Item, Replier, handler_name, runner_cancelled
from .intercept import Interceptors

if TYPE_CHECKING:
    from .._counters import Counters
    from .._message import Message
    from .._ratelog import RateLimitedLog
    from .._wire.bodies import BodySpec
    from .node import Node

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move


class InvokeHost(Protocol):
    """What calling a handler needs of the bus around it."""

    node: Node
    counters: Counters
    ratelog: RateLimitedLog
    hooks: Interceptors

    @property
    def replies(self) -> Replier:
        """Where handlers' outcomes go."""


class Invoker:
    """The part of a registration that calls its handler for one message of any kind."""

    address: str
    pattern: bool
    handler: Callable[..., Any]
    _host: InvokeHost
    _spec: BodySpec
    _pass: int
    _is_async: bool

    async def _invoke(self, item: Item) -> None:
        address = self.address
        if self.pattern:
            address, item = item[9], item[:9]  # type: ignore[misc]
        body, is_json, headers, msg_id, cid, reply_to, sender, timestamp, deadline = item
        host = self._host
        if deadline is not None and deadline < now():
            # The requester has given up already: don't start work nobody will read.
            host.counters.count("dropped.expired")
            return
        spec = self._spec
        replies = host.replies
        if is_json or not (spec.adapter is None or (spec.cls is not None and isinstance(body, spec.cls))):
            try:
                body = spec.from_json(body) if is_json else spec.from_python(body)
            except BodyInvalid as exc:
                host.counters.count("failures.invalid_body")
                host.ratelog.warning("invalid_body", "a message to %r failed validation and was not handled: %s",
                                     self.address, exc)
                if cid is not None:
                    await replies.answer(cid, reply_to, "fail", None, 422, str(exc), "ValidationError")
                return
        host.counters.delivered += 1
        mode = self._pass
        msg: Message[Any] | None = None
        started = None
        try:
            if mode == PASS_BODY:
                args: tuple[Any, ...] = (body,)
            elif mode == PASS_NOTHING:
                args = ()
            else:
                answer = None if cid is None else BoundAnswer(replies, cid, reply_to)
                msg = make_message(body, address, headers, msg_id, cid, reply_to, sender, timestamp, answer)
                args = (msg,)
                if mode == PASS_INLINE:
                    # Internal sinks (streams) take the message and answer it themselves;
                    # a full stream that waits returns what to await before the next one.
                    held = self.handler(msg)
                    if held is not None:
                        await held
                    return
            if host.hooks.inbound:  # interceptors see a Message, whatever the handler takes
                seen = msg or make_message(body, address, headers, msg_id, cid, reply_to, sender, timestamp, None)
                started = Interceptors.run(host.hooks.inbound, seen)
            if self._is_async:
                result = await self.handler(*args)
            else:
                try:
                    result = await run_in_thread(self.handler, *args)
                except asyncio.CancelledError as exc:
                    if runner_cancelled(exc):  # stop() gave up on it; the thread itself cannot be stopped
                        logger.warning("handler %s at %r still runs in its worker thread; stop() abandoned it",
                                       handler_name(self.handler), self.address)
                    raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if started is not None:
                Interceptors.finish(started, exc)
            if runner_cancelled(exc):
                raise
            if msg is None or msg.__pydantic_private__["_answer"] is not None:  # type: ignore[index]
                await self._failed(exc, cid, reply_to)
            else:
                await self._failed(exc, None, None)
            return
        if started is not None:
            Interceptors.finish(started, None, result)
        if cid is None or (msg is not None and msg.__pydantic_private__["_answer"] is None):  # type: ignore[index]
            return
        if reply_to == host.node.id:
            replies.resolve_local(cid, result)
        else:
            await replies.answer(cid, reply_to, "reply", result, 0, "", "")

    async def _failed(self, exc: BaseException, cid: str | None, reply_to: str | None) -> None:
        self._host.counters.count("failures.handler")
        logger.exception("handler %s for %r raised", handler_name(self.handler), self.address)
        if cid is not None:
            await self._host.replies.answer(cid, reply_to, "fail", None, 500, str(exc), type(exc).__name__)
