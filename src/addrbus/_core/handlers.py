"""How to call a handler: with nothing, the body or the Message, and what type its body is."""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from typing import Any, Protocol

from .._exceptions import ConfigError
from .._message import Message
from .._wire.bodies import ANY_SPEC, BodySpec, spec_for

# What a consumer is handed: (body, body_is_json, headers, id, correlation_id,
# reply_to, sender, timestamp, deadline). A tuple: it is built on every delivery.
Item = tuple[Any, bool, dict[str, str], str, "str | None", "str | None", str, float, "float | None"]



def at(item: Item, address: str) -> Item:
    """Return ``item`` with the concrete ``address`` last: what a pattern's consumer is handed."""
    return (*item, address)  # type: ignore[return-value]


#: How a handler is called: with no argument, the body, the Message, or (streams) the Message inline.
PASS_NOTHING, PASS_BODY, PASS_MESSAGE, PASS_INLINE = 0, 1, 2, 3


#: What :func:`_message_arg` returns for an annotation that is not a Message (None is a body type).
_NOT_A_MESSAGE: Any = object()


#: What a handler's full backlog does to a new message (``overflow=``).
OVERFLOW_POLICIES = ("wait", "drop_new", "drop_oldest")
DEFAULT_OVERFLOW_TIMEOUT = 5.0
#: ``(policy, overflow_timeout)``, checked by :func:`check_overflow`.
Overflow = tuple[str, float]


def check_overflow(policy: Any, timeout: Any) -> Overflow:
    """Return the overflow setting, or raise ConfigError for a policy or timeout that is not one."""
    if policy not in OVERFLOW_POLICIES:
        raise ConfigError(f"overflow must be one of {', '.join(map(repr, OVERFLOW_POLICIES))}, not {policy!r}")
    if type(timeout) not in (int, float) or not 0 < timeout < 1e6:  # also refuses NaN and infinity
        raise ConfigError(f"overflow_timeout must be a positive number of seconds, not {timeout!r}")
    return policy, float(timeout)


def _message_arg(annotation: Any) -> Any:
    """Return T if ``annotation`` is ``Message[T]`` (``Any`` for bare Message), else ``_NOT_A_MESSAGE``.

    ``Message[None]`` gives ``type(None)``: an address that carries no body.
    """
    if isinstance(annotation, type) and issubclass(annotation, Message):
        args = annotation.__pydantic_generic_metadata__["args"]
        if not args:
            return Any
        return type(None) if args[0] is None else args[0]
    return _NOT_A_MESSAGE


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
        raise ConfigError(f"handler {handler_name(fn)} must take at most one argument (the message or its body)")
    param = params[0]
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception as exc:  # NameError, TypeError from unresolvable forward references
        raise ConfigError(f"cannot resolve the annotations of handler {handler_name(fn)}: {exc}") from None
    annotation = hints.get(param.name, Any)
    inner = _message_arg(annotation)
    if inner is not _NOT_A_MESSAGE:
        return PASS_MESSAGE, spec_for(inner)
    if param.name not in hints:
        return (PASS_BODY if body_default else PASS_MESSAGE), ANY_SPEC
    return PASS_BODY, spec_for(annotation)


def is_async(fn: Callable[..., Any]) -> bool:
    """Tell whether calling ``fn`` returns a coroutine (an ``async def``, or an object with one as ``__call__``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async __call__ counts
    )


def handler_name(fn: Callable[..., Any]) -> str:
    """Return a handler's name for log lines."""
    return getattr(fn, "__qualname__", None) or repr(fn)


def runner_cancelled(exc: BaseException) -> bool:
    """Tell whether ``exc`` is this runner being cancelled, not a handler raising CancelledError itself.

    A handler that raises ``CancelledError`` (or another ``BaseException``) on its own has
    failed, like one that raises ``ValueError``: its runner must live on for the backlog.
    """
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Replier(Protocol):
    """Where a handler's outcome goes: the bus's replies."""

    def resolve_local(self, cid: str, body: Any) -> None:
        """Resolve a request made on this very bus with ``body``."""

    async def answer(self, cid: str, reply_to: str | None, kind: str, body: Any, code: int, message: str,
                     remote_type: str, headers: dict[str, str] | None = None) -> None:
        """Answer a request (``kind`` ``reply`` or ``fail``), here or on the requesting node."""


class BoundAnswer:
    """Bound answer for one request, stored in ``Message._answer``."""

    __slots__ = ("_cid", "_replies", "_reply_to")

    def __init__(self, replies: Replier, cid: str, reply_to: str | None) -> None:
        self._replies = replies
        self._cid = cid
        self._reply_to = reply_to

    async def __call__(self, kind: str, body: Any, code: int, message: str, remote_type: str,
                       headers: dict[str, str] | None = None) -> None:
        await self._replies.answer(self._cid, self._reply_to, kind, body, code, message, remote_type, headers)
