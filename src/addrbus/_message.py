"""Message[T]: what handlers receive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from collections.abc import Awaitable

from collections.abc import Callable

T = TypeVar("T")


class Message(BaseModel, Generic[T]):
    """One message, as a handler receives it.

    ``body`` is validated against the handler's annotation (``Message[User]``
    gives a ``User``). ``reply()`` and ``fail()`` answer a request; for a
    ``send`` or ``publish`` they do nothing.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    body: T
    address: str
    headers: dict[str, str] = Field(default_factory=dict)
    id: str = ""
    correlation_id: str | None = None
    reply_to: str | None = None
    sender: str = ""
    timestamp: float = 0.0
    _answer: Callable[..., Awaitable[None]] | None = PrivateAttr(default=None)

    @property
    def is_request(self) -> bool:
        """Tell whether the sender waits for a reply."""
        return self.correlation_id is not None

    async def reply(self, body: Any = None, *, headers: dict[str, str] | None = None) -> None:
        """Answer the request with ``body``. Only the first answer counts."""
        answer = self._answer
        if answer is not None:
            self._answer = None
            await answer("reply", body, 0, "", "", headers)

    async def fail(self, code: int, message: str) -> None:
        """Fail the request: the requester gets ``RecipientFailure(code, message)``."""
        answer = self._answer
        if answer is not None:
            self._answer = None
            await answer("fail", None, code, message, "")


_FIELDS_SET = frozenset({"body", "address", "headers", "id", "correlation_id", "reply_to", "sender", "timestamp"})
_new = object.__new__
_setattr = object.__setattr__


def make_message(
    body: Any,
    address: str,
    headers: dict[str, str],
    msg_id: str,
    correlation_id: str | None,
    reply_to: str | None,
    sender: str,
    timestamp: float,
    answer: Callable[..., Awaitable[None]] | None,
) -> Message[Any]:
    """Build a Message without validation: every field was checked already.

    This is what ``model_construct`` does, minus its generality; it is on the
    hot path of every delivery.
    """
    msg = _new(Message)
    _setattr(
        msg,
        "__dict__",
        {
            "body": body,
            "address": address,
            "headers": headers,
            "id": msg_id,
            "correlation_id": correlation_id,
            "reply_to": reply_to,
            "sender": sender,
            "timestamp": timestamp,
        },
    )
    _setattr(msg, "__pydantic_fields_set__", _FIELDS_SET)
    _setattr(msg, "__pydantic_extra__", None)
    _setattr(msg, "__pydantic_private__", {"_answer": answer})
    return msg
