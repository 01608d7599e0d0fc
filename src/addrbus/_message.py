"""Message[T], what handlers receive, and the envelope every message travels in."""

from __future__ import annotations

import itertools
import secrets
import time
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from collections.abc import Awaitable

from collections.abc import Callable

T = TypeVar("T")

WIRE_VERSION = 1

# Limits on what one envelope may carry. Senders are held to the header limits
# (``_bus._check_headers``); receivers refuse anything past any of them.
MAX_HEADERS = 64
MAX_HEADER_CHARS = 8192
MAX_ID_LENGTH = 64  # message, correlation and node ids: the bus's own are under 40

Kind = Literal["pub", "send", "req", "reply", "fail", "ctl"]


def new_node_id() -> str:
    """Return a random node id: 16 lowercase hex characters."""
    return secrets.token_hex(8)


def id_source(node_id: str) -> Callable[[], str]:
    """Return a function making ids unique across the bus: the node id plus a counter.

    A counter is ~20x cheaper than ``uuid4()`` and, prefixed by a random node
    id, just as unique within a bus. The chain of ``map`` objects runs in C:
    no Python frame per id.
    """
    hexes = map(format, itertools.count(1), itertools.repeat("x"))
    return map((node_id + "-").__add__, hexes).__next__


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


class Failure(BaseModel):
    """Why a request failed, as carried by a ``fail`` envelope."""

    type: str
    code: int = -1
    message: str = ""
    remote_type: str = ""


class Envelope(BaseModel):
    """The versioned wire form of one message (without its body).

    The body travels beside the envelope as its own JSON document, so user
    fields can never collide with envelope fields.
    """

    model_config = ConfigDict(frozen=False, extra="forbid")

    v: int = WIRE_VERSION
    kind: Kind
    ns: str = ""
    addr: str = ""
    id: str = ""
    cid: str | None = None
    rto: str | None = None
    src: str = ""
    dst: str | None = None
    dl: float | None = None
    ts: float = 0.0
    hdr: dict[str, str] = Field(default_factory=dict)
    err: Failure | None = None
    # On transports that pass objects, the body itself; never serialised here.
    body: Any = Field(default=None, exclude=True)


# Wall-clock seconds: deadlines travel between machines.
now = time.time


_ENVELOPE_DEFAULTS = {name: f.get_default(call_default_factory=True) for name, f in Envelope.model_fields.items()}


def make_envelope(**fields: Any) -> Envelope:
    """Build an Envelope without validation, from values the bus made itself.

    ``Envelope(...)`` validates every field (~2-4 us); this costs ~0.9 us. Never
    use it for a received frame: ``Envelope.model_validate_json`` checks those.
    """
    env = _new(Envelope)
    values = {**_ENVELOPE_DEFAULTS, "hdr": {}, **fields}
    _setattr(env, "__dict__", values)
    _setattr(env, "__pydantic_fields_set__", set(fields))
    _setattr(env, "__pydantic_extra__", None)
    _setattr(env, "__pydantic_private__", None)
    return env
