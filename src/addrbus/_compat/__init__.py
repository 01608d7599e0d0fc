"""autobus compatibility: ``Event``, ``Client`` and the module-level API on one default client.

``import addrbus as autobus`` runs autobus programs unchanged: events are
pydantic models published (fan-out) at ``autobus.event.<ClassName>``
(:mod:`.events`); each :class:`Client` (:mod:`.client`) has a bus of its own;
the module-level functions (:mod:`.default`) act on one default client.
"""

from .._jobs import every
from .client import AUTOBUS_URL, Client
from .default import publish, run, schedule, start, stop, subscribe, unsubscribe
from .events import EVENT_PREFIX, Event, event_address

__all__ = [
    "AUTOBUS_URL",
    "EVENT_PREFIX",
    "Client",
    "Event",
    "event_address",
    "every",
    "publish",
    "run",
    "schedule",
    "start",
    "stop",
    "subscribe",
    "unsubscribe",
]
