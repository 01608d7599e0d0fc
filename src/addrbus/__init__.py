"""addrbus: a Vert.x-style, address-based event bus for asyncio Python."""


from ._bus import EventBus
from ._consumer import Registration
from ._exceptions import (
    BusError,
    BusNotRunning,
    BusStopped,
    ConfigError,
    DeliveryUnknown,
    FailureType,
    MessageTooLarge,
    NoHandlers,
    RecipientFailure,
    RecipientGone,
    ReplyError,
    RequestTimeout,
    TransportError,
)
from ._message import Message
from ._stream import Stream

__version__ = "0.1.0"

__all__ = [
    "BusError",
    "BusNotRunning",
    "BusStopped",
    "ConfigError",
    "DeliveryUnknown",
    "EventBus",
    "FailureType",
    "Message",
    "MessageTooLarge",
    "NoHandlers",
    "RecipientFailure",
    "RecipientGone",
    "Registration",
    "ReplyError",
    "RequestTimeout",
    "Stream",
    "TransportError",
]
