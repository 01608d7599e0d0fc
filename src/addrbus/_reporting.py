"""Who watches the bus: interceptors and observers (:class:`Watching`), and what a node tells a monitor.

Every bus consumes :data:`STATE_ADDRESS` with a handler of its own; a monitor
(``addrbus monitor``) asks each node there with ``request(..., node=...)``.
``bus.consumers()`` and ``bus.nodes()`` leave system addresses out, and no
pattern matches them, so it never joins the round-robin of a user's address.

Counting messages per address costs an interceptor: the reporter installs
one (an outbound hook only) when a monitor first asks, and removes it once
no monitor has asked for :data:`IDLE` seconds. A bus nobody monitors pays
nothing.
"""

from __future__ import annotations

import asyncio
import collections
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._core.intercept import Finisher, Interceptors, Observer, Observing, Outcome, Outgoing
from ._patterns import SYSTEM_PREFIX
from ._version import __version__

if TYPE_CHECKING:
    from ._core.direct import Direct
    from ._core.outbound import Outbound

#: The system address every bus answers with its state (:meth:`Reporter.state`).
STATE_ADDRESS = f"{SYSTEM_PREFIX}state"
#: Seconds without a monitor's question after which the counting interceptor is removed.
IDLE = 30.0
#: Distinct addresses counted per node; more are counted under ``other``.
MAX_ADDRESSES = 200
#: Request durations kept between two questions (the latest ones).
MAX_SAMPLES = 256
OTHER = "other"


class Reported(Protocol):
    """What the reporter reads of its bus."""

    @property
    def node_id(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def transport_state(self) -> str: ...
    def describe(self) -> str: ...
    def stats(self) -> dict[str, int]: ...
    def local_handlers(self) -> dict[str, int]: ...
    def add_interceptor(self, interceptor: Any) -> Callable[[], None]: ...


class Reporter:
    """Answer a monitor's question with this node's state; count messages per address while monitored."""

    def __init__(self, bus: Reported) -> None:
        self._bus = bus
        self._started = time.time()
        self._sent: dict[str, int] = {}
        self._latency: collections.deque[float] = collections.deque(maxlen=MAX_SAMPLES)
        self._remove: Callable[[], None] | None = None
        self._asked = 0.0

    def started(self) -> None:
        """The bus started: its uptime counts from now; counts start again with the next question."""
        self._started = time.time()
        self._stop_counting()

    def _stop_counting(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        self._sent.clear()
        self._latency.clear()

    async def answer(self, question: Any = None) -> dict[str, Any]:
        """The handler at :data:`STATE_ADDRESS`: return :meth:`state`, and count while monitored."""
        self._asked = time.monotonic()
        if self._remove is None:
            self._remove = self._bus.add_interceptor(self)
            asyncio.get_running_loop().call_later(IDLE, self._check_idle)
        return self.state()

    def _check_idle(self) -> None:
        if self._remove is None:
            return
        left = self._asked + IDLE - time.monotonic()
        if left <= 0:
            self._stop_counting()
        else:
            asyncio.get_running_loop().call_later(left, self._check_idle)

    def outbound(self, call: Outgoing) -> Finisher | None:
        """Count the message under its address; time a request."""
        address = call.address
        if address.startswith(SYSTEM_PREFIX):
            return None
        sent = self._sent
        if address not in sent and len(sent) >= MAX_ADDRESSES:
            address = OTHER
        sent[address] = sent.get(address, 0) + 1
        return self._timed if call.kind == "request" else None

    def _timed(self, outcome: Outcome) -> None:
        self._latency.append(outcome.duration)

    def state(self) -> dict[str, Any]:
        """Return this node's state: identity, uptime, transport, handlers, messages sent, latency, counters."""
        bus = self._bus
        latency = list(self._latency)
        self._latency.clear()
        return {
            "node_id": bus.node_id,
            "namespace": bus.namespace,
            "transport": bus.describe(),
            "transport_state": bus.transport_state,
            "uptime": round(time.time() - self._started, 3),
            "time": time.time(),
            "version": __version__,
            "python": platform.python_version(),
            "handlers": bus.local_handlers(),
            "sent": dict(self._sent),
            "latency": [round(seconds, 6) for seconds in latency],
            "stats": bus.stats(),
        }


class Watching:
    """Interceptors and observers: the watching methods of :class:`~addrbus.EventBus`."""

    _hooks: Interceptors
    _out: Outbound
    _direct: Direct

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(kind, address, body, headers)`` for every publish, send and request of this bus.

        ``kind`` is ``"publish"``, ``"send"`` or ``"request"``; the observer is
        called before delivery, whether or not anyone handles the message
        (``addrbus.testing.Recorder`` is built on it). An observer that raises is
        logged and skipped. Returns a function that removes the observer.
        """
        return self.add_interceptor(Observing(observer))

    def add_interceptor(self, interceptor: Any) -> Callable[[], None]:
        """Install an interceptor (:class:`~addrbus.Interceptor`): hooks on what goes out and what is handled.

        Its ``outbound(call)`` sees every publish, send and request of this bus
        (and may add headers); its ``inbound(message)`` runs before every handler
        of this bus. Either may return a finisher, called with the
        :class:`~addrbus.Outcome`. Interceptors run in the order added; one that
        raises is logged and skipped. Returns a function that removes it.

        Raises:
            TypeError: if ``interceptor`` has neither hook.
        """
        remove = self._hooks.add(interceptor)
        self._direct_calls()

        def undo() -> None:
            remove()
            self._direct_calls()

        return undo

    def _direct_calls(self) -> None:
        # A request's handler here runs within its call (3.12+) only with no inbound hook to see it.
        self._out.direct = None if self._hooks.inbound else self._direct
