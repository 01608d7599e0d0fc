"""Past the duplicate-id window, as docs/security.md says: a duplicate is delivered again, a sealed replay is not.

That the pages give the code's figure (16,384 ids) is checked by
``tests/security/test_hostile_frames.py``; these check what the page says happens
past it, on ``memory://NAME?serialize=1``, the transport that carries bytes
in-process (the window is kept above the transports).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from addrbus import EventBus, generate_key
from addrbus._wire.wire import DEDUP_WINDOW
from tests.conftest import unique
from tests.security._harness import WAIT, MemoryNet, counted, frame, sealed

ROOT = Path(__file__).resolve().parents[2]


def test_security_md_says_what_happens_past_the_window() -> None:
    text = " ".join((ROOT / "docs/security.md").read_text(encoding="utf-8").split())
    assert "Past the window, a duplicate is delivered again." in text
    assert "a replayed sealed frame is still refused" in text


class Got(list[int]):
    """What the handler received, in order; ``await got.until(n)`` waits for body ``n``."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    async def handler(self, body: int) -> None:
        self.append(body)
        self._changed.set()

    async def until(self, body: int) -> None:
        async with asyncio.timeout(WAIT):
            while body not in self:
                self._changed.clear()
                await self._changed.wait()


async def test_a_duplicate_within_the_window_is_dropped_and_one_past_it_is_delivered_again(
    make_bus: Callable[..., EventBus], address: str
) -> None:
    net = MemoryNet()
    bus = make_bus(net.url(), namespace=unique("ns"))
    got = Got()
    bus.on(address, got.handler)
    await bus.start()
    ns, nobody = bus.namespace, unique("nobody")

    first = frame(ns, address, 1)
    await net.inject(bus, first)
    for _ in range(DEDUP_WINDOW - 1):  # the most other ids that keep 1's in the window
        await net.inject(bus, frame(ns, nobody))
    await net.inject(bus, first)  # within the window: dropped
    second = frame(ns, address, 2)
    await net.inject(bus, second)
    for _ in range(DEDUP_WINDOW):  # 2's id is pushed out
        await net.inject(bus, frame(ns, nobody))
    before = counted(bus).get("duplicate", 0)
    await net.inject(bus, second)  # past the window: delivered again
    await net.inject(bus, frame(ns, address, 3))
    await got.until(3)
    assert got == [1, 2, 2, 3]
    assert counted(bus).get("duplicate", 0) == before == 1


async def test_a_sealed_frame_replayed_past_the_window_is_refused_as_a_replay(
    make_bus: Callable[..., EventBus], address: str
) -> None:
    net = MemoryNet()
    key = generate_key()
    bus = make_bus(net.url(), namespace=unique("ns"), shared_key=key)
    got = Got()
    bus.on(address, got.handler)
    await bus.start()
    ns, nobody = bus.namespace, unique("nobody")

    captured = sealed(key, frame(ns, address, 1))
    await net.inject(bus, captured)
    for _ in range(DEDUP_WINDOW):  # sealed too: a cleartext frame would be dropped before the window
        await net.inject(bus, sealed(key, frame(ns, nobody)))
    await net.inject(bus, captured)  # its id is forgotten; its token is not
    await net.inject(bus, sealed(key, frame(ns, address, 2)))
    await got.until(2)
    assert got == [1, 2]
    counts = counted(bus)
    assert counts.get("replay") == 1
    assert "duplicate" not in counts
