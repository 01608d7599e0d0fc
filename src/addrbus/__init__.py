"""addrbus: a Vert.x-style, address-based event bus for asyncio Python."""

from ._bus import EventBus
from ._compat import Client, Event, publish, run, schedule, start, stop, subscribe, unsubscribe
from ._core.intercept import Interceptor, Outcome, Outgoing
from ._core.registration import Registration
from ._core.stream import Stream
from ._endpoint import Endpoint
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
from ._jobs import Job, at, cron, every
from ._message import Message
from ._version import __version__ as __version__
from ._wire.sealing import generate_key

__all__ = [
    "BusError",
    "BusNotRunning",
    "BusStopped",
    "Client",
    "ConfigError",
    "DeliveryUnknown",
    "Endpoint",
    "Event",
    "EventBus",
    "FailureType",
    "Interceptor",
    "Job",
    "Message",
    "MessageTooLarge",
    "NoHandlers",
    "Outcome",
    "Outgoing",
    "RecipientFailure",
    "RecipientGone",
    "Registration",
    "ReplyError",
    "RequestTimeout",
    "Stream",
    "TransportError",
    "at",
    "cron",
    "every",
    "generate_key",
    "publish",
    "run",
    "schedule",
    "start",
    "stop",
    "subscribe",
    "unsubscribe",
]
