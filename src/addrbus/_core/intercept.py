"""Interceptors: hooks on what the bus sends and on what its handlers handle.

An interceptor is any object with an ``outbound`` method, an ``inbound``
method, or both (:class:`Interceptor` describes them). Each hook may return a
*finisher*, called once with the :class:`Outcome` when the call or the
handling ends: that is how a tracer ends its span, or a metric times a request.

Nothing here is on the hot path when no interceptor is installed: the bus
checks one list before it takes the intercepted path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._message import Message

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move


@dataclass(slots=True)
class Outgoing:
    """A publish, send or request on its way out, as an interceptor's ``outbound`` hook sees it.

    Attributes:
        kind: ``"publish"``, ``"send"`` or ``"request"``.
        address: the address, as a checked ``str``.
        body: the body, as the caller gave it (read it; don't change it).
        headers: the message's headers: a hook may add to them (strings only),
            and they travel with the message.
        node: the node id the caller asked for (``node=``), or None.
    """

    kind: str
    address: str
    body: Any
    headers: dict[str, str]
    node: str | None = None


@dataclass(slots=True, frozen=True)
class Outcome:
    """How an intercepted call or handling ended, handed to the hook's finisher.

    Attributes:
        error: the exception it ended with (``NoHandlers``, ``RequestTimeout``,
            the handler's own error...), or None.
        duration: seconds from the hook to the end (a request's: to its reply).
        result: a request's reply body, a handler's return value; None otherwise.
    """

    error: BaseException | None
    duration: float
    result: Any = None


#: What a hook may return: called once with the outcome.
Finisher = Callable[[Outcome], None]


class Interceptor(Protocol):
    """What the bus calls on an interceptor; either method may be left out.

    ``outbound(call)`` runs for every publish, send and request of this bus,
    before it is routed; ``inbound(message)`` runs on the handler's task just
    before a handler of this bus runs (a context it sets is the handler's).
    Either may return a finisher, called with the :class:`Outcome`. Hooks run in
    the order the interceptors were added, finishers in the reverse order; a
    hook or finisher that raises is logged and skipped.
    """

    def outbound(self, call: Outgoing) -> Finisher | None:
        """See the message on its way out; add headers; return a finisher or None."""

    def inbound(self, message: Message[Any]) -> Finisher | None:
        """See a message before its handler runs; return a finisher or None."""


class Interceptors:
    """The interceptors of one bus, with their hooks in two lists the hot path checks."""

    __slots__ = ("inbound", "installed", "outbound")

    def __init__(self) -> None:
        self.installed: list[Any] = []
        #: The ``outbound`` hooks, in order; empty when none is installed (the one check the hot path makes).
        self.outbound: list[Callable[[Outgoing], Finisher | None]] = []
        #: The ``inbound`` hooks, in order.
        self.inbound: list[Callable[[Message[Any]], Finisher | None]] = []

    def add(self, interceptor: Any) -> Callable[[], None]:
        """Install ``interceptor`` after those already there; return a function that removes it.

        :raises TypeError: if it has neither an ``outbound`` nor an ``inbound`` method.
        """
        if not (callable(getattr(interceptor, "outbound", None)) or callable(getattr(interceptor, "inbound", None))):
            raise TypeError(f"an interceptor needs an outbound or an inbound method: {interceptor!r} has neither")
        self.installed.append(interceptor)
        self._rebuild()

        def remove() -> None:
            if interceptor in self.installed:
                self.installed.remove(interceptor)
                self._rebuild()

        return remove

    def _rebuild(self) -> None:
        # In place: the bus's parts hold these very lists.
        self.outbound[:] = [hook for i in self.installed if callable(hook := getattr(i, "outbound", None))]
        self.inbound[:] = [hook for i in self.installed if callable(hook := getattr(i, "inbound", None))]

    @staticmethod
    def run(hooks: list[Callable[[Any], Finisher | None]], seen: Any) -> tuple[list[Finisher], float]:
        """Call each hook with ``seen``; return the finishers they gave and when that was."""
        finishers = []
        for hook in list(hooks):
            try:
                finisher = hook(seen)
            except Exception:
                logger.exception("interceptor hook %r raised; skipped", hook)
                continue
            if finisher is not None:
                finishers.append(finisher)
        return finishers, perf_counter()

    @staticmethod
    def finish(started: tuple[list[Finisher], float], error: BaseException | None, result: Any = None) -> None:
        """Call the finishers of :meth:`run`, last first, with the outcome."""
        finishers, began = started
        if not finishers:
            return
        outcome = Outcome(error, perf_counter() - began, result)
        for finisher in reversed(finishers):
            try:
                finisher(outcome)
            except Exception:
                logger.exception("interceptor finisher %r raised; skipped", finisher)


#: ``observer(kind, address, body, headers)``, kind ``publish``, ``send`` or ``request``.
Observer = Callable[[str, str, Any, dict[str, str]], None]


class Observing:
    """An observer (``bus.add_observer``) as an interceptor with an outbound hook and no finisher."""

    __slots__ = ("observer",)

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def __repr__(self) -> str:
        return f"<observer {self.observer!r}>"

    def outbound(self, call: Outgoing) -> None:
        """Tell the observer of the call."""
        self.observer(call.kind, call.address, call.body, call.headers)
