"""The transport interface: opaque frames in, opaque frames out.

A transport moves frames between the nodes of one bus. It knows nothing of
requests, replies, addresses or typing; the bus builds all of that on top of
four operations: ``start``, ``stop``, ``broadcast`` and ``unicast``.

Guarantees a transport must give:

* Frames are delivered at most once and may be lost (UDP), but never altered:
  a frame either arrives whole or not at all.
* Frames from one sender to one receiver arrive in the order they were sent
  where the medium allows it (memory, Redis); where it does not (UDP) the bus
  copes with reordering.
* ``on_frame`` is called on the event loop, one frame at a time. It never
  raises (the bus catches everything) and never blocks.
* A transport never delivers a node's own broadcast back to it.
* ``broadcast`` and ``unicast`` raise :class:`~addrbus.TransportError` (or a
  subclass) for failures, translated from the library underneath, and
  :class:`~addrbus.MessageTooLarge` for a frame over ``max_frame_size``.

Confirmed sources (optional). A transport that learns where a peer is from
what it receives (udp:// learns a peer's socket address from the node id in
its cleartext datagram header) must not believe a header on its own: anyone
can write one. When ``on_frame`` takes a second parameter named ``confirm``
(see :func:`accepts_confirm`; the bus's handler does), such a transport may
call ``on_frame(frame, confirm)``, where ``confirm`` is a :data:`Confirm`
function. The bus calls it, during that ``on_frame`` call, with the envelope's
sender node id once the frame has opened (authenticated, with a
``shared_key``) and passed every check; the transport learns the address only
if that node id is the one its header claimed. A frame that does not open is
never confirmed. ``confirm`` may be omitted (or ``None``) for any frame; a
transport that never passes one, and a handler without the parameter, work as
before. Transports that learn nothing from what they receive (memory://,
redis://) never pass one and pay nothing.

Delivery by interest (optional). The bus publishes a message for an address
with :meth:`Transport.publish`, naming the address's *interest key* (the
address itself, or a keyed digest of it when frames are sealed, so that the
engine's topic names reveal nothing), and keeps :meth:`Transport.subscribe`
current with the keys of the addresses this node consumes. A transport whose
engine routes by topic (a Redis channel, a NATS subject, an MQTT topic per key)
sets :attr:`Transport.routes_by_interest`: a node then receives published
frames only for what it consumes. The defaults broadcast every publish and
subscribe to nothing, so a transport without an engine works unchanged; one
that filters on receipt (udp:// tags each datagram with the key's digest)
drops the rest before any decryption.

Choosing the consumer (optional). A transport whose engine can hand a frame
to exactly one of the nodes subscribed to a key (NATS queue groups, MQTT
shared subscriptions) sets :attr:`Transport.routes_sends`. Its
:meth:`~Transport.subscribe` then also joins each key's group, and the bus
sends a ``send`` or a request bound for another node with
:meth:`~Transport.send_any`, leaving the choice of node to the engine: a node
that died since the bus's table last heard of it is never chosen. A request
goes with a ``reply`` token; when the engine knows that nobody took it (NATS's
no-responders status), the transport calls the function given to
:meth:`~Transport.on_undeliverable` with that token, and the request fails
``NoHandlers`` at once.

Knowing who listens (optional). A transport whose :meth:`~Transport.unicast`
returns ``False`` exactly when nobody listens to that node's id, and whose
:meth:`~Transport.broadcast` returns how many nodes heard, sets
:attr:`Transport.knows_listeners`. The bus's membership then keeps no
all-to-all heartbeat: each node watches a few neighbours only, so heartbeat
traffic per node does not grow with the bus (docs/membership.md).
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Collection
from typing import Any

FrameHandler = Callable[[Any], None]
"""Called with each received frame: ``bytes``, or an object on transports that
set :attr:`Transport.passes_objects`."""

Confirm = Callable[[str], None]
"""Handed with a frame to ``on_frame(frame, confirm)``: called with the
envelope's sender node id once the frame opened and passed the bus's checks.
The transport then trusts what its own header said about that node (its
address) if the header named the same node. Calling it is cheap, never raises,
and is a no-op after the transport stopped."""

ConfirmingFrameHandler = Callable[[Any, Confirm | None], None]
"""A :data:`FrameHandler` that takes a ``confirm`` too (:func:`accepts_confirm`)."""


def accepts_confirm(on_frame: FrameHandler) -> bool:
    """Tell whether ``on_frame`` takes a ``confirm`` parameter (see :data:`Confirm`).

    Checked once, at ``start()``; a handler whose signature cannot be read
    (a builtin) counts as one without it.
    """
    try:
        parameters = inspect.signature(on_frame).parameters
    except (TypeError, ValueError):
        return False
    return "confirm" in parameters

StateListener = Callable[[str], None]
"""Called with the new transport state (see :class:`Transport.state`)."""


class Transport(abc.ABC):
    """Move opaque frames between the nodes of one bus.

    The guarantees every transport gives, and the optional ``confirm`` handed
    with a frame by transports that learn peers' addresses from what they
    receive, are in the module docstring above (:data:`Confirm`).
    """

    #: The scheme this transport is registered under (``"memory"``, ``"udp"``...).
    scheme: str = ""
    #: The largest frame (in bytes) this transport carries.
    max_frame_size: int = 2**31
    #: True when frames are passed as Python objects, never serialised
    #: (the in-process transport). The bus then skips the wire codec.
    passes_objects: bool = False
    #: True when nodes can vanish without a goodbye (a crash, a lost network),
    #: so membership must run heartbeats to notice them.
    needs_heartbeat: bool = True
    #: How many requests one node may have outstanding to another at once; 0 for
    #: no limit. Set by transports without flow control of their own (UDP), so
    #: that a burst of requests and their replies fits the receivers' buffers.
    max_in_flight: int = 0
    #: True when :meth:`publish` reaches only the nodes subscribed to its key
    #: (the engine routes by topic); False when every node hears every publish.
    routes_by_interest: bool = False
    #: True when :meth:`unicast` returns False exactly when no node listens to
    #: that id, and :meth:`broadcast` returns how many nodes heard (Redis): the
    #: membership then watches a few neighbours instead of hearing every node.
    knows_listeners: bool = False
    #: True when :meth:`send_any` reaches exactly one node subscribed to its key,
    #: chosen by the engine (a queue group): the bus then leaves that choice to it.
    routes_sends: bool = False

    def __init__(self) -> None:
        self.state: str = "disconnected"
        self._state_listener: StateListener | None = None

    @abc.abstractmethod
    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Connect, and start delivering this node's frames to ``on_frame``.

        Frames for this node are those broadcast by other nodes of the same
        ``namespace`` and those unicast to ``node_id``. A transport that learns
        peers' addresses from received frames passes a :data:`Confirm` with a
        frame when ``on_frame`` accepts one (module docstring); any other
        transport calls ``on_frame(frame)`` only.

        :raises TransportError: if the transport cannot be started.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop delivering frames and release every resource. Idempotent."""

    @abc.abstractmethod
    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:
        """Send ``frame`` to every other node of the namespace.

        ``timeout`` bounds the whole call, in seconds (``None``: the
        transport's own default bound).

        :returns: how many other nodes received it, where the transport
            knows (memory, Redis); ``None`` where it cannot (UDP).
        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises DeliveryUnknown: if the call timed out after the frame may
            have left (it may or may not be delivered).
        :raises TransportError: if the frame could not be handed over.
        """

    @abc.abstractmethod
    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:
        """Send ``frame`` to the node ``node_id`` only; ``timeout`` as for broadcast.

        :returns: ``False`` when the transport knows that nobody received it
            (no such node is listening); ``True`` otherwise.
        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises TransportError: if the frame could not be handed over.
        """

    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> int | None:
        """Send ``frame`` to every other node subscribed to the interest key ``key``.

        The default broadcasts it (every node hears it, and drops what it does
        not consume). Raises and returns as :meth:`broadcast`; the count, where
        known, is of the nodes that received it.
        """
        return await self.broadcast(frame, timeout=timeout)

    async def subscribe(self, keys: Collection[str]) -> None:
        """Start receiving the frames published for each of ``keys``; idempotent per key.

        Returns once the engine delivers them: a frame another node publishes
        after this returns reaches this node. The transport keeps its
        subscriptions across reconnects itself. The default does nothing (every
        publish is broadcast).

        :raises TransportError: if the engine refused or could not be reached.
        """
        return None

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Stop receiving the frames published for each of ``keys``; idempotent per key."""
        return None

    async def send_any(self, key: str, frame: Any, *, reply: str | None = None,
                       timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Send ``frame`` to one node subscribed to ``key``, chosen by the engine (:attr:`routes_sends` only).

        With ``reply``, a token the transport hands to the :meth:`on_undeliverable`
        listener if the engine reports that no node took the frame. Raises as
        :meth:`broadcast`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not route sends (routes_sends is False)")

    def on_undeliverable(self, listener: Callable[[str], None] | None) -> None:
        """Register the one callback told the ``reply`` token of a frame no node took."""
        return None

    def stats(self) -> dict[str, int]:
        """Return the transport's own counters (kernel drops, reconnects...)."""
        return {}

    def on_state(self, listener: StateListener | None) -> None:
        """Register the one callback told of state changes."""
        self._state_listener = listener

    def _set_state(self, state: str) -> None:
        # One of: "connected", "degraded", "disconnected", "reconnected".
        if state == self.state:
            return
        self.state = state
        if self._state_listener is not None:
            self._state_listener(state)

    def describe(self) -> str:
        """Return a URL-like description without any secret, for logs and reprs."""
        return f"{self.scheme}://"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
