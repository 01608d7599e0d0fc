"""A registered handler: its typing, its bounded backlog and the tasks that run it."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import typing
from typing import TYPE_CHECKING, Any

from ._codec import ANY_SPEC, BodyInvalid, BodySpec, spec_for
from ._exceptions import ConfigError
from ._message import Message, make_message, now
from ._threads import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus

logger = logging.getLogger("addrbus")

# What a consumer is handed: (body, body_is_json, headers, id, correlation_id,
# reply_to, sender, timestamp, deadline). A tuple: it is built on every delivery.
Item = tuple[Any, bool, dict[str, str], str, "str | None", "str | None", str, float, "float | None"]

PASS_NOTHING, PASS_BODY, PASS_MESSAGE, PASS_INLINE = 0, 1, 2, 3


def _message_arg(annotation: Any) -> Any | None:
    """Return T if ``annotation`` is ``Message[T]`` (``Any`` for bare Message), else None."""
    if isinstance(annotation, type) and issubclass(annotation, Message):
        args = annotation.__pydantic_generic_metadata__["args"]
        return args[0] if args else Any
    return None


def inspect_handler(fn: Callable[..., Any], body_default: bool, localns: dict[str, Any] | None) -> tuple[int, BodySpec]:
    """Decide how to call ``fn``: with nothing, the body, or the Message; and the body's type.

    :raises ConfigError: if ``fn`` is not callable, takes more than one
        required argument, or has an annotation that cannot be resolved.
    """
    if not callable(fn):
        raise ConfigError(f"a handler must be callable, not {type(fn).__name__}")
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return (PASS_BODY if body_default else PASS_MESSAGE), ANY_SPEC
    if not params:
        return PASS_NOTHING, ANY_SPEC
    if len(params) > 1:
        raise ConfigError(f"handler {_name(fn)} must take at most one argument (the message or its body)")
    param = params[0]
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception as exc:  # NameError, TypeError from unresolvable forward references
        raise ConfigError(f"cannot resolve the annotations of handler {_name(fn)}: {exc}") from None
    annotation = hints.get(param.name, Any)
    inner = _message_arg(annotation)
    if inner is not None:
        return PASS_MESSAGE, spec_for(inner)
    if param.name not in hints:
        return (PASS_BODY if body_default else PASS_MESSAGE), ANY_SPEC
    return PASS_BODY, spec_for(annotation)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Registration:
    """A handler registered at an address. ``unregister()`` removes it.

    Messages wait in a bounded backlog (``max_queue``) and start in the order
    they arrived. While a handler is suspended (awaiting I/O) more runs of it
    start, up to ``concurrency`` at once; a handler that never suspends runs
    one message after another with no task per message.
    """

    def __init__(
        self,
        bus: EventBus,
        address: str,
        handler: Callable[..., Any],
        *,
        pass_mode: int,
        spec: BodySpec,
        max_queue: int,
        concurrency: int,
    ) -> None:
        if max_queue < 1 or concurrency < 1:
            raise ConfigError("max_queue and concurrency must be at least 1")
        self.address = address
        self.handler = handler
        self._bus = bus
        self._pass = pass_mode
        self._spec = spec
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an async __call__ counts
        )
        self._max_queue = max_queue
        self._concurrency = concurrency
        self._backlog: collections.deque[Item] = collections.deque()
        self._runners = 0
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._overflowing = False
        self._check_scheduled = False
        self.active = True

    def __repr__(self) -> str:
        return f"<Registration {self.address!r} -> {_name(self.handler)}{'' if self.active else ' (unregistered)'}>"

    def unregister(self) -> None:
        """Remove the handler; messages already in its backlog are still handled."""
        if self.active:
            self.active = False
            self._bus._unregister(self)

    @property
    def pending(self) -> int:
        """How many messages wait in the backlog."""
        return len(self._backlog)

    def deliver(self, item: Item) -> bool:
        """Queue one message; return False (and drop it) if the backlog is full."""
        backlog = self._backlog
        if len(backlog) >= self._max_queue:
            if not self._overflowing:
                self._overflowing = True
                logger.warning(
                    "consumer %s at %r is overflowing (%d queued): dropping messages",
                    _name(self.handler), self.address, len(backlog),
                )
            return False
        backlog.append(item)
        runners = self._runners
        # Start a runner if none is going, or if every runner is suspended inside
        # the handler (so the new message would otherwise wait for I/O it does not need).
        if runners == 0 or (self._busy == runners and runners < self._concurrency):
            self._spawn()
        return True

    def _check_suspended(self) -> None:
        self._check_scheduled = False
        if self._backlog and self._busy == self._runners and self._runners < self._concurrency:
            self._spawn()

    def _spawn(self) -> None:
        self._runners += 1
        task = asyncio.get_running_loop().create_task(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        backlog = self._backlog
        bus = self._bus
        handler = self.handler
        spec = self._spec
        spec_cls = spec.cls
        fast = self._pass == PASS_BODY and self._is_async
        try:
            while backlog:
                item = backlog.popleft()
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
                    if fast and (item[8] is None or item[8] >= now()) and (
                        item[1] or spec.adapter is None or (spec_cls is not None and isinstance(body, spec_cls))
                    ):
                        if item[1]:  # JSON off the wire: validate here, not in _invoke's extra coroutine
                            try:
                                body = spec.from_json(body)
                            except BodyInvalid:
                                await self._invoke(item)  # validates again, and answers why it failed
                                continue
                        bus._n_delivered += 1
                        try:
                            result = await handler(body)
                        except Exception as exc:
                            await self._failed(exc, item[4], item[5])
                        else:
                            cid = item[4]
                            if cid is not None:
                                if item[5] == bus.node_id:
                                    bus._resolve_local(cid, result)
                                else:
                                    await bus._answer(cid, item[5], "reply", result, 0, "", "")
                    else:
                        await self._invoke(item)
                finally:
                    self._busy -= 1
            if self._overflowing:
                self._overflowing = False
                logger.info("consumer %s at %r caught up", _name(self.handler), self.address)
        finally:
            self._runners -= 1

    async def _invoke(self, item: Item) -> None:
        body, is_json, headers, msg_id, cid, reply_to, sender, timestamp, deadline = item
        bus = self._bus
        if deadline is not None and deadline < now():
            # The requester has given up already: don't start work nobody will read.
            bus._count("dropped.expired")
            return
        spec = self._spec
        if is_json or not (spec.adapter is None or (spec.cls is not None and isinstance(body, spec.cls))):
            try:
                body = spec.from_json(body) if is_json else spec.from_python(body)
            except BodyInvalid as exc:
                bus._count("failures.invalid_body")
                bus._ratelog.warning("invalid_body", "a message to %r failed validation and was not handled: %s",
                                     self.address, exc)
                if cid is not None:
                    await bus._answer(cid, reply_to, "fail", None, 422, str(exc), "ValidationError")
                return
        bus._n_delivered += 1
        mode = self._pass
        msg: Message[Any] | None = None
        try:
            if mode == PASS_BODY:
                args: tuple[Any, ...] = (body,)
            elif mode == PASS_NOTHING:
                args = ()
            else:
                answer = None if cid is None else _Answer(bus, cid, reply_to)
                msg = make_message(body, self.address, headers, msg_id, cid, reply_to, sender, timestamp, answer)
                args = (msg,)
                if mode == PASS_INLINE:
                    # Internal sinks (streams) take the message and answer it themselves.
                    self.handler(msg)
                    return
            if self._is_async:
                result = await self.handler(*args)
            else:
                result = await run_in_thread(self.handler, *args)
        except Exception as exc:
            if msg is None or msg.__pydantic_private__["_answer"] is not None:  # type: ignore[index]
                await self._failed(exc, cid, reply_to)
            else:
                await self._failed(exc, None, None)
            return
        if cid is None or (msg is not None and msg.__pydantic_private__["_answer"] is None):  # type: ignore[index]
            return
        if reply_to == bus.node_id:
            bus._resolve_local(cid, result)
        else:
            await bus._answer(cid, reply_to, "reply", result, 0, "", "")

    async def _failed(self, exc: Exception, cid: str | None, reply_to: str | None) -> None:
        bus = self._bus
        bus._count("failures.handler")
        logger.exception("handler %s for %r raised", _name(self.handler), self.address)
        if cid is not None:
            await bus._answer(cid, reply_to, "fail", None, 500, str(exc), type(exc).__name__)


class _Answer:
    """Bound answer for one request, stored in ``Message._answer``."""

    __slots__ = ("_bus", "_cid", "_reply_to")

    def __init__(self, bus: EventBus, cid: str, reply_to: str | None) -> None:
        self._bus = bus
        self._cid = cid
        self._reply_to = reply_to

    async def __call__(self, kind: str, body: Any, code: int, message: str, remote_type: str,
                       headers: dict[str, str] | None = None) -> None:
        await self._bus._answer(self._cid, self._reply_to, kind, body, code, message, remote_type, headers)
