"""Issue 12, item 2: what a remote node can make this node hold or do is capped.

Beside the regression tests of tests/security/test_hostile_frames.py, these
cover the caps they do not reach: the weighted pick without one list entry per
handler, a forged sequence number under the jump cap (healed by the real node's
own ping), pings and hellos in floods, addresses no bus sends, the cap on all
remote addresses together, a flood of 10,000 fake nodes, and the heartbeat a
bus may be given. Hostile frames are injected the way an outsider would (a
datagram with a valid transport header, a plain ``PUBLISH``, a call on a hub
member); after each one a real request still reaches the real node.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from addrbus import ConfigError, EventBus
from addrbus._core import peers as caps  # the caps are module constants of peers
from addrbus._core.membership import Membership
from addrbus._core.routing import Router
from addrbus._counters import Counters
from addrbus._wire.envelope import Envelope
from addrbus._wire.frames import decode_frame, encode_frame
from tests.conftest import unique
from tests.security._harness import FAKE_NODE, WAIT, MemoryNet, Net, counted, frame, new_id

MB = 1024 * 1024


def control(namespace: str, op: str, body: dict[str, Any], src: str = FAKE_NODE) -> bytes:
    """Return a membership frame of protocol 2 as node ``src`` would send it."""
    return frame(namespace, op, {"v": caps.PROTOCOL, **body}, kind="ctl", src=src)


def fake_node(i: int) -> str:
    return f"{0xFEED_0000_0000_0000 + i:016x}"


class Pair:
    """A victim bus, the real node it routes ``address`` to (answering with its id), and the medium."""

    def __init__(self, net: Net, victim: EventBus, real: EventBus, address: str) -> None:
        self.net, self.victim, self.real, self.address = net, victim, real, address
        self.marker = unique("marker")
        self._seen: set[int] = set()
        self._arrived = asyncio.Event()
        self._next = 0
        victim.on(self.marker, self._on_marker)

    async def _on_marker(self, n: int) -> None:
        self._seen.add(n)
        self._arrived.set()

    async def inject(self, payload: bytes) -> None:
        await self.net.inject(self.victim, payload, direct=True)

    async def flush(self) -> None:
        """Return once the victim has handled everything injected so far (a marker injected after it)."""
        self._next += 1
        n = self._next
        await self.inject(frame(self.victim.namespace, self.marker, n))
        async with asyncio.timeout(WAIT):
            while n not in self._seen:
                self._arrived.clear()
                await self._arrived.wait()

    async def still_served(self) -> None:
        """Twenty requests, each answered by the real node: nothing raised, nothing went astray."""
        results = await asyncio.gather(*(self.victim.request(self.address, timeout=WAIT) for _ in range(20)))
        assert results == [self.real.node_id] * 20

    def within_caps(self) -> None:
        remote = {node: addrs for node, addrs in self.victim.nodes().items() if node != self.victim.node_id}
        assert len(remote) <= caps.MAX_NODES
        assert sum(map(len, remote.values())) <= caps.MAX_REMOTE_ADDRESSES
        assert all(len(addrs) <= caps.MAX_ADDRESSES_PER_NODE for addrs in remote.values())
        assert all(0 < c <= caps.MAX_HANDLERS_PER_ADDRESS for addrs in remote.values() for c in addrs.values())


@pytest.fixture
async def pair(net: Net, make_bus: Callable[..., EventBus], address: str,
               request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    namespace = unique("ns")
    marker = request.node.get_closest_marker("heartbeat")
    heartbeat = marker.args[0] if marker else 0.2
    real = make_bus(net.url(), namespace=namespace, startup_wait=0.05, heartbeat=heartbeat)
    victim = make_bus(net.url(), namespace=namespace, startup_wait=0.05, heartbeat=heartbeat)

    @real.on(address)
    async def whoami() -> str:
        return real.node_id

    await real.start()
    await victim.start()
    await victim.wait_for_handlers(address, 1, timeout=WAIT)
    yield Pair(net, victim, real, address)


# -- the weighted pick -------------------------------------------------------------------------------


class FakeReg:
    def __init__(self, address: str) -> None:
        self.address = address


def test_the_weighted_pick_keeps_the_order_of_one_entry_per_handler() -> None:
    """Picks come in exactly the order of the old list (locals, then each node repeated by its count)."""
    rng = random.Random(12)
    for _ in range(50):
        router = Router()
        locals_: list[Any] = [FakeReg("a") for _ in range(rng.randrange(3))]
        for reg in locals_:
            router.add_local(reg)
        weights = {fake_node(i): rng.randrange(1, 6) for i in range(rng.randrange(4))}
        for node, count in weights.items():
            router.set_node(node, {"a": count})
        expanded: list[Any] = list(locals_) + [n for n, c in sorted(weights.items()) for _ in range(c)]
        picks = [router.pick("a") for _ in range(3 * len(expanded) + 1)]
        assert picks == [expanded[i % len(expanded)] for i in range(len(picks))] if expanded else {None} == set(picks)


def test_the_weighted_pick_allocates_nothing_per_handler() -> None:
    """1,024 nodes with 1,024 handlers each: the first pick allocates well under a megabyte (not 1M entries)."""
    router = Router()
    for i in range(caps.MAX_NODES):
        router.set_node(fake_node(i), {"a": caps.MAX_HANDLERS_PER_ADDRESS})
    gc.collect()
    tracemalloc.start()
    try:
        first = router.pick("a")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == fake_node(0)
    assert peak < MB // 4, f"the first pick allocated {peak / MB:.1f} MB"
    assert [router.pick("a") for _ in range(caps.MAX_HANDLERS_PER_ADDRESS)][-2:] == [fake_node(0), fake_node(1)]


# -- a forged sequence number under the cap ----------------------------------------------------------


@pytest.mark.parametrize("net", [pytest.param("udp", marks=pytest.mark.multicast),
                                 pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_a_forged_seq_under_the_jump_cap_heals_at_the_real_nodes_next_ping(pair: Pair) -> None:
    """A state in the real node's name, seq just under the jump cap: the real node's ping puts it right.

    The forged state empties the node's addresses; the node's own ping names
    its real (lower) seq, the victim asks, and takes the real state although
    its seq is lower than the forged one (a node's seq only grows).
    """
    forged = caps.MAX_SEQ_JUMP  # within the jump from any seq the real node has used
    await pair.inject(control(pair.victim.namespace, "state", {"seq": forged, "hb": 0.2, "addrs": {}},
                              src=pair.real.node_id))
    await pair.flush()
    assert pair.victim.nodes()[pair.real.node_id] == {}, "the forged state was not even taken"
    assert await pair.victim.wait_for_handlers(pair.address, 1, timeout=WAIT) == 1
    await pair.still_served()


# -- frames of another membership protocol -------------------------------------------------------------


async def test_a_frame_of_the_old_protocol_is_dropped_and_never_misread(pair: Pair,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A version-1 state (no ``v``) emptying the real node's addresses: dropped, counted, logged by version."""
    before = counted(pair.victim).get("protocol_version", 0)
    old = frame(pair.victim.namespace, "state", {"seq": 2**40, "hb": 0.2, "addrs": {}}, kind="ctl",
                src=pair.real.node_id)
    with caplog.at_level("WARNING", logger="addrbus.membership"):
        await pair.inject(old)
        await pair.flush()
    assert counted(pair.victim).get("protocol_version", 0) == before + 1
    assert pair.victim.nodes()[pair.real.node_id] == {pair.address: 1}, "the old frame was read"
    assert any("protocol version 1" in r.getMessage() for r in caplog.records)
    await pair.still_served()


# -- floods of pings and hellos ------------------------------------------------------------------------


async def test_a_ping_flood_in_a_real_nodes_name_draws_few_hellos(net: Net, pair: Pair) -> None:
    """500 pings naming a seq the victim lacks draw at most two hellos per heartbeat of the victim's, plus one."""
    before = counted(pair.victim).get("ping_flood", 0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with net.capture() as seen:
        for i in range(500):
            await pair.inject(control(pair.victim.namespace, "ping", {"seq": 10**9 + i, "hb": 0.2},
                                      src=pair.real.node_id))
            if i % 32 == 31:
                await asyncio.sleep(0)  # a yield: let the victim read, as a busy peer would
        await pair.flush()
        took = loop.time() - began
    asked = [u for u in seen.payloads if _is(u, "hello", pair.victim.node_id, pair.real.node_id)]
    assert len(asked) <= 2 * (1 + int(took / 0.2)) + 1, f"500 pings in {took:.2f} s drew {len(asked)} hellos"
    assert counted(pair.victim).get("ping_flood", 0) > before
    await pair.still_served()


def _is(payload: bytes, op: str, src: str, dst: str) -> bool:
    try:
        env = decode_frame(payload)[0]
    except Exception:
        return False
    return env.kind == "ctl" and env.addr == op and env.src == src and env.dst == dst


async def test_hello_answers_are_capped_per_node_and_for_all_nodes_together() -> None:
    """10,000 hellos from one node draw one answer; two rounds from 1,000 nodes stay within the global rate."""
    sent: list[tuple[str, str | None]] = []

    async def send(op: str, body: dict[str, Any], to: str | None) -> None:
        sent.append((op, to))

    counters = Counters()
    members = Membership(Router(), send, lambda node, why: None, heartbeat=0.05, count=counters.count)
    await members.start(use_heartbeat=False)
    sent.clear()
    loop = asyncio.get_running_loop()
    hello = {"v": caps.PROTOCOL, "seq": 1, "hb": 60.0, "addrs": {"a": 1}}
    for _ in range(10_000):
        members.on_ctl("hello", fake_node(0), hello)
    await asyncio.sleep(0)  # the answers are tasks: let them start
    assert sent == [("state", fake_node(0))]
    assert counters.get("dropped.hello_flood") == 9_998  # all but the one answered and the one owed

    began = loop.time()
    for _ in range(2):
        for i in range(1, 1_000):
            members.on_ctl("hello", fake_node(i), hello)
        await asyncio.sleep(0.06)  # time for each node's window (one heartbeat, 0.05 s) to pass
    took = loop.time() - began
    answers = sum(1 for op, to in sent if op == "state") - 1
    # The owed answers of the second round fall due in that window too.
    assert answers <= caps.ANSWER_BURST + caps.MAX_ANSWERS_PER_SECOND * took + 1, (answers, took)
    assert counters.get("dropped.answer_rate") > 0
    await members.stop()


# -- addresses no bus sends, and the caps on addresses ------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"bad\\u001b[2J": 1}', b'{"bad\\ud800": 1}', b'{"   ": 1}',
                                 b'{"' + b"a" * 256 + b'": 1}', b'{"a": -1}', b'{"a": true}'],
                         ids=["escape", "lone-surrogate", "blank", "too-long", "negative", "bool"])
async def test_a_state_with_an_address_no_bus_sends_is_dropped(pair: Pair, raw: bytes) -> None:
    """An address ``address_of`` would refuse (or one UTF-8 cannot encode), or a bad count: not learnt."""
    before = sum(counted(pair.victim).values())
    env = Envelope(kind="ctl", ns=pair.victim.namespace, addr="state", id=new_id(), src=FAKE_NODE, ts=time.time())
    await pair.inject(encode_frame(env, b'{"seq":1,"hb":1.0,"addrs":' + raw + b"}"))  # JSON no encoder writes
    await pair.flush()
    assert FAKE_NODE not in pair.victim.nodes()
    assert sum(counted(pair.victim).values()) > before
    await pair.still_served()


# A slow heartbeat: on Redis the victim pings its ring successors, and a fake node's inbox has no
# subscriber, so a ping between two injections drops that node and the cap would not be reached.
@pytest.mark.heartbeat(30.0)
@pytest.mark.parametrize("net", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_all_remote_addresses_together_are_capped(pair: Pair) -> None:
    """Eleven fake nodes of 10,000 addresses each: the victim holds at most 100,000 remote addresses.

    Not on udp://: one datagram cannot carry 10,000 addresses.
    """
    before = counted(pair.victim).get("too_many_addresses", 0)
    per_node = caps.MAX_ADDRESSES_PER_NODE
    for n in range(caps.MAX_REMOTE_ADDRESSES // per_node + 1):
        addrs = {f"n{n}.a{i}": 1 for i in range(per_node)}
        await pair.inject(control(pair.victim.namespace, "state", {"seq": 1, "hb": 60.0, "addrs": addrs},
                                  src=fake_node(n)))
    await pair.flush()
    pair.within_caps()
    assert counted(pair.victim).get("too_many_addresses", 0) > before
    await pair.still_served()


# -- a flood of fake nodes -------------------------------------------------------------------------------


async def test_ten_thousand_fake_nodes_cost_a_bounded_table(make_bus: Callable[..., EventBus], address: str) -> None:
    """10,000 fake nodes (two addresses each) on memory://?serialize=1: 1,024 are held, in well under 8 MB.

    Before the caps all 10,000 were held (15 MB traced here, 9 MB of RSS on udp://).
    """
    net = MemoryNet()
    namespace = unique("ns")
    real = make_bus(net.url(), namespace=namespace, startup_wait=0.05)
    victim = make_bus(net.url(), namespace=namespace, startup_wait=0.05)

    @real.on(address)
    async def whoami() -> str:
        return real.node_id

    await real.start()
    await victim.start()
    await victim.wait_for_handlers(address, 1, timeout=WAIT)
    pair = Pair(net, victim, real, address)
    frames = [control(namespace, "state", {"seq": 1, "hb": 1.0, "addrs": {"flood": 1, f"only.{i}": 2}},
                      src=fake_node(i)) for i in range(10_000)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i, payload in enumerate(frames):
            await pair.inject(payload)
            if i % 32 == 31:
                await asyncio.sleep(0)
        await pair.flush()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    pair.within_caps()
    assert real.node_id in victim.nodes()
    assert counted(victim).get("too_many_nodes", 0) >= 10_000 - caps.MAX_NODES
    assert held < 8 * MB, f"10,000 fake nodes hold {held / MB:.1f} MB"
    await pair.still_served()


# -- the heartbeat this bus is given -------------------------------------------------------------------


@pytest.mark.parametrize("heartbeat", [0.01, 61.0, 3600.0])
def test_a_heartbeat_peers_would_refuse_is_a_config_error(heartbeat: float) -> None:
    """A bus announces its heartbeat; one outside 0.05-60 s would make every peer drop it, so it is refused."""
    with pytest.raises(ConfigError, match="heartbeat"):
        EventBus("memory://", heartbeat=heartbeat)


@pytest.mark.parametrize("heartbeat", caps.HEARTBEAT_RANGE)
async def test_the_heartbeats_at_the_ends_of_the_range_are_taken(heartbeat: float) -> None:
    async with EventBus("memory://", heartbeat=heartbeat) as bus:
        assert bus.running
