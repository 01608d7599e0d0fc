"""Bodies: what handlers and requesters expect a body to be, validated with pydantic.

The body travels as its own JSON document beside the envelope, so it can be
validated straight into the handler's type with ``TypeAdapter.validate_json``.
"""

from __future__ import annotations

import types
from typing import Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

_NO_BODY = b"null"
_NONE_TYPE = type(None)
#: Why a body is refused where none is expected: a handler of ``Message[None]``, a reply typed None.
NO_BODY_EXPECTED = "body failed validation: no body expected (its type is None, as in Message[None]), but one was sent"


class BodyInvalid(Exception):
    """A body did not validate; the text names fields, never input values."""


def describe_validation_error(exc: ValidationError) -> str:
    """Return the fields that failed and why, never the values sent."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{loc}: {error['msg']}")
    count = len(parts)
    shown = "; ".join(parts[:10])
    more = f" (and {count - 10} more)" if count > 10 else ""
    return f"body failed validation ({count} error{'s' if count != 1 else ''}): {shown}{more}"


class BodySpec:
    """What a handler (or a requester) expects a body to be."""

    __slots__ = ("adapter", "cls", "tp")

    def __init__(self, tp: Any) -> None:
        if tp is None:
            tp = _NONE_TYPE
        self.tp = tp
        self.adapter: TypeAdapter[Any] | None = None if tp is Any else TypeAdapter(tp)
        # isinstance() gives a cheap fast path for plain classes only.
        plain = isinstance(tp, type) and not isinstance(tp, types.GenericAlias)
        self.cls: type | None = tp if plain and tp is not object else None

    def from_python(self, value: Any) -> Any:
        """Validate an in-process body, as a network transport would have.

        :raises BodyInvalid: if it does not validate.
        """
        adapter = self.adapter
        if adapter is None:
            return value
        cls = self.cls
        if cls is not None and isinstance(value, cls):
            return value
        try:
            # Through the JSON data model, so memory:// accepts exactly what the wire would.
            return adapter.validate_python(pydantic_core.to_jsonable_python(value))
        except ValidationError as exc:
            raise BodyInvalid(self._reason(exc)) from None
        except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as exc:
            raise BodyInvalid(f"body is not JSON-shaped: {type(exc).__name__}") from None

    def from_json(self, data: bytes) -> Any:
        """Validate a body received as JSON.

        :raises BodyInvalid: if it does not parse or validate.
        """
        try:
            if self.adapter is None:
                return pydantic_core.from_json(data)
            return self.adapter.validate_json(data)
        except ValidationError as exc:
            raise BodyInvalid(self._reason(exc)) from None
        except ValueError:
            raise BodyInvalid("body is not valid JSON") from None

    def _reason(self, exc: ValidationError) -> str:
        return NO_BODY_EXPECTED if self.tp is _NONE_TYPE else describe_validation_error(exc)


_specs: dict[Any, BodySpec] = {}
ANY_SPEC = BodySpec(Any)


def spec_for(tp: Any) -> BodySpec:
    """Return the (cached) BodySpec for ``tp``."""
    try:
        return _specs[tp]
    except KeyError:
        spec = _specs[tp] = BodySpec(tp)
        return spec
    except TypeError:  # unhashable annotation
        return BodySpec(tp)


def encode_body(body: Any) -> bytes:
    """Encode a body as JSON.

    :raises TypeError: if it is not JSON-serialisable.
    """
    if body is None:
        return _NO_BODY
    if isinstance(body, BaseModel):
        return body.__pydantic_serializer__.to_json(body)
    try:
        return pydantic_core.to_json(body)
    except pydantic_core.PydanticSerializationError as exc:
        raise TypeError(f"body of type {type(body).__name__} is not JSON-serialisable") from exc
