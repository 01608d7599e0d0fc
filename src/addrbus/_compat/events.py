"""autobus events: pydantic models routed by class name, at ``autobus.event.<ClassName>``.

A subclass is a different event and two classes of the same name are one: the
address is all a subscriber on another node knows of the class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .._bus import EventBus
    from .._core.registration import Registration

EVENT_PREFIX = "autobus.event."


class Event(BaseModel):
    """The base class of autobus events: a pydantic model routed by its class name."""


def event_address(event_type: type) -> str:
    """Return the address events of ``event_type`` are published at: ``autobus.event.<ClassName>``."""
    return EVENT_PREFIX + event_type.__name__


def register(bus: EventBus, event_type: type, fn: Callable[..., Any]) -> Registration:
    """Register ``fn`` for ``event_type`` on ``bus``, the body validated as ``event_type``."""
    handler: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def handler(event: Any) -> None:
            await fn(event)

        concurrency = None  # autobus runs each async handler as its own task
    else:

        def handler(event: Any) -> None:
            fn(event)

        concurrency = 1  # one event after another, in the order published, as autobus does
    # The bus reads the body's type from the annotation: a network body arrives as JSON.
    handler.__annotations__ = {"event": event_type, "return": None}
    handler.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return bus.on(event_address(event_type), handler, concurrency=concurrency)
