"""The envelope: the versioned wire form of one message, and the limits every sender is held to."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._addresses import has_control_chars, is_encodable
from .._exceptions import ConfigError

WIRE_VERSION = 1

# Limits on what one envelope may carry. Senders are held to the header limits
# (``check_headers``); receivers refuse anything past any of them.
MAX_HEADERS = 64
MAX_HEADER_CHARS = 8192
MAX_ID_LENGTH = 64  # message, correlation and node ids: the bus's own are under 40

Kind = Literal["pub", "send", "req", "reply", "fail", "ctl"]

_new = object.__new__
_setattr = object.__setattr__


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


def check_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Return a copy of ``headers`` if every sender may send them.

    :raises ValueError: for too many headers or too many characters in all.
    :raises TypeError: for a name or value that is not a ``str``.
    """
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers are allowed")
    size = 0
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("header names and values must be strings")
        if not (key.isascii() and value.isascii()) and not (is_encodable(key) and is_encodable(value)):
            raise ValueError("header names and values must be valid Unicode text (no lone surrogates)")
        size += len(key) + len(value)
    if size > MAX_HEADER_CHARS:
        raise ValueError(f"headers must total at most {MAX_HEADER_CHARS} characters")
    return dict(headers)


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it can name a bus on the wire.

    :raises ConfigError: for a non-string, over 128 characters or control characters.
    """
    if not isinstance(namespace, str):
        raise ConfigError("namespace must be a string")
    if len(namespace) > 128 or has_control_chars(namespace):
        raise ConfigError("namespace must be at most 128 printable characters")
    return namespace
