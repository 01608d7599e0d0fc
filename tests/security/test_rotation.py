"""Key rotation: a rolling restart across three nodes loses nothing.

``shared_key=[new, old]`` seals with ``new`` and opens with both. A node that
seals with a key its peers do not hold yet cannot reach them, so a rotation has
three rolling steps: add the new key second ([k1, k2]), move it first
([k2, k1]), drop the old one ([k2]). At every point of the roll, any two
nodes hold a key in common that one seals with and the other opens with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from addrbus import EventBus, NoHandlers
from addrbus._wire.sealing import generate_key
from tests.conftest import unique
from tests.security._harness import WAIT, MemoryNet, Net, counted, eventually

NAMES = ("A", "B", "C")


class Cluster:
    """Three nodes, each answering at ``<base>.<name>`` with its name."""

    def __init__(self, make_bus: Callable[..., EventBus], net: Net) -> None:
        self.make_bus, self.net = make_bus, net
        self.namespace = unique("ns")
        self.base = unique("rot")
        self.nodes: dict[str, EventBus] = {}
        self.every: list[EventBus] = []  # restarted nodes included

    async def start(self, name: str, keys: Any) -> None:
        bus = self.make_bus(self.net.url(), namespace=self.namespace, shared_key=keys, startup_wait=0.05)
        bus.on(f"{self.base}.{name}", lambda body, name=name: f"{name} got {body}")
        await bus.start()
        self.nodes[name] = bus
        self.every.append(bus)

    async def restart(self, name: str, keys: Any) -> None:
        await self.nodes[name].stop()
        await self.start(name, keys)

    async def settled(self) -> None:
        """Wait until every node knows exactly the current nodes."""
        ids = {bus.node_id for bus in self.nodes.values()}
        await eventually(lambda: all(set(b.nodes()) == ids for b in self.nodes.values()), "membership")

    async def all_pairs(self, step: str) -> None:
        await self.settled()
        for sender, bus in self.nodes.items():
            for name in NAMES:
                if name != sender:
                    reply = await bus.request(f"{self.base}.{name}", step, timeout=WAIT)
                    assert reply == f"{name} got {step}", f"{sender} -> {name} at {step}"


async def test_rolling_rotation_loses_nothing(net: Net, make_bus: Callable[..., EventBus]) -> None:
    k1, k2 = generate_key(), generate_key()
    cluster = Cluster(make_bus, net)
    for name in NAMES:
        await cluster.start(name, [k1])
    await cluster.all_pairs("start")
    for phase, keys in (("add", [k1, k2]), ("promote", [k2, k1]), ("drop", [k2])):
        for name in NAMES:
            await cluster.restart(name, keys)
            await cluster.all_pairs(f"{phase} {name}")
    for bus in cluster.every:
        assert counted(bus) == {}, "a frame was refused during the roll"


async def test_promoting_a_key_before_every_node_holds_it_cuts_that_node_off(
    make_bus: Callable[..., EventBus],
) -> None:
    # Why the "add" step exists: [k2, k1] seals with k2, which [k1] nodes cannot open.
    k1, k2 = generate_key(), generate_key()
    cluster = Cluster(make_bus, MemoryNet())
    for name in NAMES:
        await cluster.start(name, [k1])
    await cluster.restart("A", [k2, k1])
    b = cluster.nodes["B"]
    try:
        await b.request(f"{cluster.base}.A", "hi", timeout=WAIT)
    except NoHandlers:
        pass
    else:
        raise AssertionError("B should not have learnt A's handler: it cannot open A's frames")
    assert counted(b).get("invalid", 0) >= 1
