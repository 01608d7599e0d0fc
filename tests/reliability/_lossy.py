"""Faulty transports for the reliability suite, reachable through URL schemes registered in tests only.

* ``lossyudp://GROUP:PORT?seed=S&loss=P&dup=P&delay=P&max_delay=SECONDS&...``:
  a real :class:`UdpTransport` that drops, duplicates and delays (reorders)
  outgoing frames, each fault drawn from a seeded :class:`random.Random`.
* ``lossymem://HUB?link=NAME&serialize=1``: a memory transport whose link can
  be cut and restored (``LINKS[NAME].down = True``): while down, nothing goes
  out and nothing comes in, as on a pulled cable.

``monkeypatch.setitem(addrbus.transports.registry.SCHEMES, "lossyudp", __name__)`` registers
them; the library itself never knows of them.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from addrbus.transports.base import FrameHandler
from addrbus.transports.memory import MemoryTransport
from addrbus.transports.memory import from_url as memory_from_url
from addrbus.transports.udp import UdpTransport
from addrbus.transports.udp import from_url as udp_from_url

SCHEMES = ("lossyudp", "lossymem")
_instances = itertools.count()
LINKS: dict[str, LinkMemoryTransport] = {}


class LossyUdpTransport(UdpTransport):
    """Multicast with seeded faults on every frame sent: loss, duplication, delay."""

    def __init__(self, base: UdpTransport, *, seed: int, loss: float, dup: float, delay: float,
                 max_delay: float) -> None:
        super().__init__(base.group, base.port, interface=base.interface, ttl=base.ttl, loopback=base.loopback,
                         rate=base.rate)
        # Each instance its own stream, yet the run is reproducible from the seed.
        self._rng = random.Random(f"{seed}-{next(_instances)}")
        self.loss, self.dup, self.delay, self.max_delay = loss, dup, delay, max_delay
        self.faults = {"sent": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "late_send_errors": 0}
        self._late: set[asyncio.Task[None]] = set()

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        await self._faulty(lambda: UdpTransport.broadcast(self, frame, timeout=timeout))
        return None

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        await self._faulty(lambda: UdpTransport.unicast(self, node_id, frame, timeout=timeout))
        return True

    async def _faulty(self, send: Any) -> None:
        rng, faults = self._rng, self.faults
        faults["sent"] += 1
        # Independent draws, in a fixed order, so a seed replays the same faults.
        drop, dup, late, lag = rng.random() < self.loss, rng.random() < self.dup, rng.random(), rng.random()
        if drop:
            faults["dropped"] += 1
            return
        copies = 2 if dup else 1
        if dup:
            faults["duplicated"] += 1
        if late < self.delay:
            faults["delayed"] += 1
            task = asyncio.get_running_loop().create_task(self._send_late(send, copies, lag * self.max_delay))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return
        for _ in range(copies):
            await send()

    async def _send_late(self, send: Any, copies: int, after: float) -> None:
        await asyncio.sleep(after)
        try:
            for _ in range(copies):
                await send()
        except Exception:  # stopped meanwhile: the frame is lost, as on a real network
            self.faults["late_send_errors"] += 1

    async def stop(self) -> None:
        for task in list(self._late):
            task.cancel()
        await asyncio.gather(*self._late, return_exceptions=True)
        await super().stop()

    def stats(self) -> dict[str, int]:
        return {**super().stats(), **{f"shim_{k}": v for k, v in self.faults.items()}}


class LinkMemoryTransport(MemoryTransport):
    """An in-process transport whose link can be cut (``down``) and restored."""

    def __init__(self, hub: str, *, serialize: bool) -> None:
        super().__init__(hub, serialize=serialize)
        self.down = False
        self.cut = {"out": 0, "in": 0}

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        def incoming(frame: Any) -> None:
            if self.down:
                self.cut["in"] += 1
            else:
                on_frame(frame)

        await super().start(node_id, namespace, incoming)

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        if self.down:
            self.cut["out"] += 1
            return 0
        return await super().broadcast(frame, timeout=timeout)

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        if self.down:
            self.cut["out"] += 1
            return True  # a cut cable does not tell the sender that nobody got it
        return await super().unicast(node_id, frame, timeout=timeout)


def _split(url: str, ours: set[str]) -> tuple[str, dict[str, str]]:
    """Return ``url`` without the arguments in ``ours``, and those arguments."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    rest = urlencode([(k, v) for k, v in pairs if k not in ours])
    return urlunsplit(parts._replace(query=rest)), {k: v for k, v in pairs if k in ours}


def from_url(url: str) -> UdpTransport | MemoryTransport:
    """Build a faulty transport from a ``lossyudp://`` or ``lossymem://`` URL."""
    scheme = urlsplit(url).scheme
    if scheme == "lossyudp":
        rest, args = _split(url, {"seed", "loss", "dup", "delay", "max_delay"})
        base = udp_from_url("udp" + rest[len(scheme):])
        return LossyUdpTransport(
            base, seed=int(args.get("seed", "0")), loss=float(args.get("loss", "0.1")),
            dup=float(args.get("dup", "0.1")), delay=float(args.get("delay", "0.1")),
            max_delay=float(args.get("max_delay", "0.02")),
        )
    rest, args = _split(url, {"link"})
    plain = memory_from_url("memory" + rest[len(scheme):])
    link = LINKS[args["link"]] = LinkMemoryTransport(plain.hub_name, serialize=plain.serialize)
    return link
