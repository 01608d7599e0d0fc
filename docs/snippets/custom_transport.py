"""A third-party transport: pipe://NAME joins the in-process pipe NAME.

A package makes it reachable by URL scheme with an entry point, in its pyproject.toml:

    [project.entry-points."addrbus.transports"]
    pipe = "custom_transport"
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from addrbus.transports.base import FrameHandler, Transport

# pipe name -> namespace -> node id -> that node's frame handler
_pipes: dict[str, dict[str, dict[str, FrameHandler]]] = {}


class PipeTransport(Transport):
    """Hand frames, as bytes, to the other buses of this process on the same pipe."""

    scheme = "pipe"
    passes_objects = False  # frames are bytes, so the bus runs its real wire codec
    needs_heartbeat = False  # a node cannot vanish without stop(), which says goodbye

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._node = ""
        self._peers: dict[str, FrameHandler] = {}

    def describe(self) -> str:
        return f"pipe://{self.name}"

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        self._node = node_id
        self._peers = _pipes.setdefault(self.name, {}).setdefault(namespace, {})
        self._peers[node_id] = on_frame
        self._set_state("connected")

    async def stop(self) -> None:
        self._peers.pop(self._node, None)
        self._peers = {}  # a stopped node neither sends nor receives
        self._set_state("disconnected")

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:
        others = [deliver for node, deliver in self._peers.items() if node != self._node]
        for deliver in others:
            deliver(frame)
        return len(others)

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:
        deliver = self._peers.get(node_id)
        if deliver is None:
            return False
        deliver(frame)
        return True


def from_url(url: str) -> PipeTransport:
    """Build a pipe transport from ``pipe://NAME``."""
    return PipeTransport(urlsplit(url).netloc)


async def main() -> None:
    sender, receiver = from_url("pipe://demo"), from_url("pipe://demo")
    await receiver.start("receiver", "", lambda frame: print("received", frame))
    await sender.start("sender", "", lambda frame: None)
    print("broadcast reached", await sender.broadcast(b"hello"), "node")
    print("unicast to a stranger:", await sender.unicast("nobody", b"hello"))


if __name__ == "__main__":
    asyncio.run(main())
