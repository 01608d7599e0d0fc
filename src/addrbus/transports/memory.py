"""The in-process transport: buses on one named hub are nodes of one bus.

``memory://`` gives each bus a private hub; ``memory://NAME`` puts every bus
that names the same hub on one bus, as if they were separate processes.
Frames are Python objects handed over directly (no serialisation), unless
``?serialize=1`` asks for every message to round-trip through the wire codec,
exactly as a network transport would deliver it.

Published frames go only to the buses subscribed to their interest key (the
hub keeps who subscribed to what), as an engine that routes by topic would.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from ._urls import parse_query, to_bool
from .base import FrameHandler, Transport


class MemoryHub:
    """The nodes of one in-process bus, by namespace."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[str, dict[str, FrameHandler]] = {}
        #: namespace -> interest key -> the node ids subscribed to it.
        self.interest: dict[str, dict[str, set[str]]] = {}


_hubs: dict[str, MemoryHub] = {}


class MemoryTransport(Transport):
    """Hand frames to the other buses of the same hub, synchronously, in order."""

    scheme = "memory"
    needs_heartbeat = False  # an in-process node cannot vanish without stop()
    routes_by_interest = True
    knows_listeners = True

    def __init__(self, hub: str = "", *, serialize: bool = False) -> None:
        super().__init__()
        self.hub_name = hub
        self.serialize = serialize
        self.passes_objects = not serialize
        self._hub: MemoryHub | None = None
        self._node = ""
        self._namespace = ""
        self._keys: set[str] = set()

    def describe(self) -> str:
        query = "?serialize=1" if self.serialize else ""
        return f"memory://{self.hub_name}{query}"

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        if self.hub_name:
            hub = _hubs.setdefault(self.hub_name, MemoryHub(self.hub_name))
        else:
            hub = MemoryHub("")
        hub.nodes.setdefault(namespace, {})[node_id] = on_frame
        self._hub, self._node, self._namespace = hub, node_id, namespace
        self._set_state("connected")

    async def stop(self) -> None:
        hub = self._hub
        if hub is None:
            return
        members = hub.nodes.get(self._namespace, {})
        members.pop(self._node, None)
        self._drop_interest(self._keys)
        self._keys = set()
        if not members:
            hub.nodes.pop(self._namespace, None)
            hub.interest.pop(self._namespace, None)
        if not hub.nodes and _hubs.get(hub.name) is hub:
            del _hubs[hub.name]
        self._hub = None
        self._set_state("disconnected")

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:
        hub = self._hub
        if hub is None:
            return 0
        members = hub.nodes.get(self._namespace, {})
        count = 0
        for node, on_frame in list(members.items()):
            if node != self._node:
                on_frame(frame)
                count += 1
        return count

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:
        hub = self._hub
        on_frame = None if hub is None else hub.nodes.get(self._namespace, {}).get(node_id)
        if on_frame is None:
            return False
        on_frame(frame)
        return True


    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> int | None:
        hub = self._hub
        if hub is None:
            return 0
        subscribed = hub.interest.get(self._namespace, {}).get(key)
        if not subscribed:
            return 0
        members = hub.nodes.get(self._namespace, {})
        count = 0
        for node in list(subscribed):
            on_frame = members.get(node)
            if on_frame is not None and node != self._node:
                on_frame(frame)
                count += 1
        return count

    async def subscribe(self, keys: Collection[str]) -> None:
        hub = self._hub
        if hub is None:
            return
        interest = hub.interest.setdefault(self._namespace, {})
        for key in keys:
            interest.setdefault(key, set()).add(self._node)
        self._keys.update(keys)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        self._drop_interest(keys)
        self._keys.difference_update(keys)

    def _drop_interest(self, keys: Collection[str]) -> None:
        hub = self._hub
        interest = None if hub is None else hub.interest.get(self._namespace)
        if not interest:
            return
        for key in keys:
            subscribed = interest.get(key)
            if subscribed is not None:
                subscribed.discard(self._node)
                if not subscribed:
                    del interest[key]


def from_url(url: str) -> MemoryTransport:
    """Build a memory transport from ``memory://[HUB][?serialize=1]``."""
    options = parse_query(url, {"serialize": to_bool})
    parts = urlsplit(url)
    hub = (parts.netloc + parts.path).strip("/")
    return MemoryTransport(hub, serialize=bool(options.get("serialize", False)))
