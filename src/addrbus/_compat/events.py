"""autobus events: routed by class name, at ``autobus.event.<ClassName>``.

An event is a pydantic model (:class:`Event`), or anything else pydantic can
validate (a dataclass), or, as autobus allows, "any simple class ... so long as
you can call ``dict(obj)`` and get back a dict that you can pass as keyword
args to the constructor": such an event travels as ``dict(event)`` and each
subscriber gets ``cls(**data)``.

A subclass is a different event and two classes of the same name are one: the
address is all a subscriber on another node knows of the class.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PydanticSchemaGenerationError, TypeAdapter

if TYPE_CHECKING:
    from .._bus import EventBus
    from .._core.registration import Registration

EVENT_PREFIX = "autobus.event."

#: The body type of an event of a plain class, on the wire: the keyword arguments of its constructor.
PLAIN_BODY = dict[str, Any]

_plain: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


class Event(BaseModel):
    """The base class of autobus events: a pydantic model routed by its class name."""


def event_address(event_type: type) -> str:
    """Return the address events of ``event_type`` are published at: ``autobus.event.<ClassName>``."""
    return EVENT_PREFIX + event_type.__name__


def is_plain(event_type: type) -> bool:
    """Tell whether events of ``event_type`` travel as ``dict(event)``: pydantic cannot validate the class.

    Models, dataclasses and whatever else pydantic has a schema for travel as
    themselves, as they always did.
    """
    try:
        return _plain[event_type]
    except (KeyError, TypeError):  # TypeError: a class that takes no weak reference
        pass
    plain = False
    if not issubclass(event_type, BaseModel):
        try:
            TypeAdapter(event_type)
        except PydanticSchemaGenerationError:
            plain = True
    try:
        _plain[event_type] = plain
    except TypeError:
        pass
    return plain


def event_body(event: Any) -> Any:
    """Return what is published for ``event``: ``dict(event)`` for a plain class, else the event itself.

    Raises:
        TypeError, ValueError: if ``dict(event)`` fails for an event of a plain class.
    """
    if is_plain(type(event)):
        return dict(event)
    return event


def register(bus: EventBus, event_type: type, fn: Callable[..., Any]) -> Registration:
    """Register ``fn`` for ``event_type`` on ``bus``, the body validated as ``event_type``.

    For a plain class the body is validated as a dict and the event rebuilt with
    ``event_type(**body)``; an event its constructor refuses is logged as the
    handler's failure.
    """
    plain = is_plain(event_type)
    handler: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def handler(event: Any) -> None:
            await fn(event_type(**event) if plain else event)

        concurrency = None  # autobus runs each async handler as its own task
    else:

        def handler(event: Any) -> None:
            fn(event_type(**event) if plain else event)

        concurrency = 1  # one event after another, in the order published, as autobus does
    # The bus reads the body's type from the annotation: a network body arrives as JSON.
    handler.__annotations__ = {"event": PLAIN_BODY if plain else event_type, "return": None}
    handler.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return bus.on(event_address(event_type), handler, concurrency=concurrency)
