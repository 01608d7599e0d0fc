"""Issue 12, items 1-3 and 12: forged or hostile frames, and the duplicate window the docs promise.

An attacker here is a local process that writes to the medium (a datagram to
the group, a plain ``PUBLISH``, a call on a hub member), never a bus. Each
test asserts what a user of the attacked bus must see: requests still reach
the real node, nothing raises into a caller, memory and answers stay capped,
and what broke a cap is counted under ``dropped.*``.

Those that fail on today's code carry ``xfail(strict=True)``: the fix flips
them to passing, and the strict mark then asks for its own removal.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from addrbus import ConfigError, EventBus, RecipientGone, RequestTimeout, generate_key
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.fixtures_redis import RedisServer
from tests.security._harness import (
    FAKE_NODE,
    WAIT,
    MemoryNet,
    Net,
    RedisNet,
    UdpNet,
    counted,
    eventually,
    frame,
    new_id,
)

# isort: split
# -- below the public API: the only private reaches of this file (paths change as src/ moves) --------
from addrbus._core.peers import PROTOCOL
from addrbus._wire import wire as _dedup_home  # where the duplicate window is kept
from addrbus._wire.frames import decode_frame as _decode_frame  # to read frames captured on the medium

# -- the caps a remote node is held to (issue 12, item 2) ------------------------------------------
MAX_NODES = 1_024  # remote nodes one bus keeps track of
MAX_ADDRESSES_PER_NODE = 10_000
MAX_HANDLERS_PER_ADDRESS = 1_024  # per node
HEARTBEAT_RANGE = (0.05, 60.0)  # seconds, the interval a node may announce
MAX_SEQ_JUMP = 2**31  # how far one state may move a known node's sequence number
STATE_ANSWERS_PER_HEARTBEAT = 1  # state answers to one sender's hellos, per heartbeat of ours

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 20  # requests made at once after an attack; every one must reach the real node


def dedup_window() -> int:
    """Return how many message ids a bus remembers to drop duplicates (the code's own figure)."""
    return int(_dedup_home.DEDUP_WINDOW)


def envelope_of(payload: bytes) -> Any:
    """Return the envelope of a cleartext frame seen on the medium, or None for anything else."""
    try:
        return _decode_frame(payload)[0]
    except Exception:
        return None


def control(namespace: str, op: str, body: dict[str, Any], *, src: str = FAKE_NODE) -> bytes:
    """Return a membership frame (hello, state, ping, bye) of protocol 2 as a node ``src`` would send it."""
    return frame(namespace, op, {"v": PROTOCOL, **body}, kind="ctl", src=src)


def state(namespace: str, addrs: dict[str, int], *, src: str = FAKE_NODE, seq: int = 1, hb: float = 1.0) -> bytes:
    """Return a ``state`` frame: node ``src`` consumes ``addrs`` (address -> handler count)."""
    return control(namespace, "state", {"seq": seq, "hb": hb, "addrs": addrs}, src=src)


def fake_node(i: int) -> str:
    """Return the i-th well-formed node id an attacker makes up."""
    return f"{0xF00D_0000_0000_0000 + i:016x}"


def dropped(bus: EventBus) -> int:
    """Return how many received frames ``bus`` counted under ``dropped.*``."""
    return sum(counted(bus).values()) - counted(bus).get("invalid_body", 0)


class Victim:
    """A bus under attack, with a way to know that it has read everything injected so far."""

    def __init__(self, net: Net, bus: EventBus) -> None:
        self.net = net
        self.bus = bus
        self.marker = unique("marker")
        self._tokens: set[str] = set()
        self._arrived = asyncio.Event()
        bus.on(self.marker, self._on_marker)

    async def _on_marker(self, token: str) -> None:
        self._tokens.add(token)
        self._arrived.set()

    async def inject(self, payload: bytes) -> None:
        """Hand ``payload`` to this bus alone, as the attacker would."""
        await self.net.inject(self.bus, payload, direct=True)

    async def flush(self) -> None:
        """Return once the bus has handled a marker injected after everything before it (same path, in order)."""
        token = new_id()
        await self.inject(frame(self.bus.namespace, self.marker, token))
        async with asyncio.timeout(WAIT):
            for _ in range(10_000):  # each turn is one marker arriving
                if token in self._tokens:
                    return
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def scene(net: Net, make_bus: Callable[..., EventBus], address: str) -> AsyncIterator[tuple[Victim, EventBus]]:
    """Yield a victim bus and the real node it routes ``address`` to; that node answers with its id."""
    namespace = unique("ns")
    responder = make_bus(net.url(), namespace=namespace, startup_wait=0.05)
    victim = Victim(net, make_bus(net.url(), namespace=namespace, startup_wait=0.05, heartbeat=5.0))

    @responder.on(address)
    async def whoami() -> str:
        return responder.node_id

    await responder.start()
    await victim.bus.start()
    await victim.bus.wait_for_handlers(address, 1, timeout=WAIT)
    yield victim, responder


async def reached(victim: Victim, responder: EventBus, address: str) -> tuple[int, Counter[str]]:
    """Make ``REQUESTS`` requests at once; return how many the real node answered, and what the others got."""
    results = await asyncio.gather(
        *(victim.bus.request(address, timeout=1.0) for _ in range(REQUESTS)), return_exceptions=True
    )
    others = Counter(type(r).__name__ if isinstance(r, BaseException) else repr(r) for r in results
                     if r != responder.node_id)
    return REQUESTS - sum(others.values()), others


# -- 1. a forged UDP header must not redirect unicasts --------------------------------------------

SPOOF_ROUNDS = 6
AFTER_ROUNDS = 3
ROUND_TIMEOUT = 0.4  # seconds per request: a direct unicast on lo answers in well under a millisecond


@pytest.mark.multicast
@pytest.mark.parametrize("spoof", ["sealed-bus-junk", "clear-bus-junk", "clear-bus-other-sender"])
async def test_a_forged_udp_header_never_redirects_unicasts(
    make_bus: Callable[..., EventBus], address: str, spoof: str
) -> None:
    """A datagram claiming the server's node id in its header must not make clients unicast to its sender.

    A peer's address may be learnt only from a frame that opened (authenticated,
    when a key is set) and whose envelope sender is the header's. The attacker
    sends, under a header claiming the server, junk to a keyed bus
    (``sealed-bus-junk``), junk to a cleartext bus (``clear-bus-junk``), or a
    valid frame from another sender (``clear-bus-other-sender``); once to the
    group and once straight at the client. Each round waits until the client
    counted both datagrams, then makes a request: every one must reach the
    server, during the spoof and after it, and none may reach the attacker.
    """
    require_private_netns()
    net = UdpNet()
    try:
        key = generate_key() if spoof == "sealed-bus-junk" else None
        namespace = unique("ns")
        server = make_bus(net.url(), namespace=namespace, shared_key=key, startup_wait=0.05)
        client = make_bus(net.url(), namespace=namespace, shared_key=key, startup_wait=0.05)

        @server.on(address)
        async def echo(x: int) -> int:
            return x

        await server.start()
        await client.start()
        await client.wait_for_handlers(address, 1, timeout=WAIT)
        assert await client.request(address, -1, timeout=WAIT) == -1
        net.sender = bytes.fromhex(server.node_id)  # every header the attacker writes now claims the server
        if spoof == "clear-bus-other-sender":
            payload = frame(namespace, address, 0, dst="1111111111111111")  # valid; sent by FAKE_NODE
        else:
            payload = b"not even a token " + b"\xff" * 16

        async def ask(i: int) -> bool:
            try:
                return await client.request(address, i, timeout=ROUND_TIMEOUT) == i
            except RequestTimeout:
                return False

        during = 0
        for i in range(SPOOF_ROUNDS):
            before = dropped(client)
            await net.inject(client, payload)
            await net.inject(client, payload, direct=True)
            await eventually(lambda n=before + 2: dropped(client) >= n, "the client to count both forged datagrams")
            during += await ask(i)
        after = 0
        for i in range(AFTER_ROUNDS):
            after += await ask(100 + i)
        stolen = 0
        net.sock.setblocking(False)
        for _ in range(10_000):  # what reached the attacker's socket
            try:
                net.sock.recv(70_000)
            except BlockingIOError:
                break
            stolen += 1
        assert (during, after, stolen) == (SPOOF_ROUNDS, AFTER_ROUNDS, 0), (
            f"{during} of {SPOOF_ROUNDS} requests succeeded during the spoof, {after} of {AFTER_ROUNDS} after;"
            f" the attacker received {stolen} datagrams"
        )
    finally:
        await net.aclose()


# -- 2. membership frames are capped ----------------------------------------------------------------


@pytest.mark.parametrize("count", [2**62, 10**6, MAX_HANDLERS_PER_ADDRESS + 1], ids=["2**62", "10**6", "cap+1"])
async def test_a_state_claiming_too_many_handlers_is_dropped(
    scene: tuple[Victim, EventBus], address: str, count: int
) -> None:
    """A node announcing more than 1,024 handlers for one address is not learnt: requests reach the real node."""
    victim, responder = scene
    before = dropped(victim.bus)
    await victim.inject(state(victim.bus.namespace, {address: count}))
    await victim.flush()
    ok, others = await reached(victim, responder, address)
    assert ok == REQUESTS, f"{ok} of {REQUESTS} requests reached the real node; the others: {dict(others)}"
    assert FAKE_NODE not in victim.bus.nodes()
    assert dropped(victim.bus) > before, "the frame was not counted under dropped.*"


@pytest.mark.parametrize("net", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_a_state_with_too_many_addresses_is_dropped(scene: tuple[Victim, EventBus], address: str) -> None:
    """A node announcing more than 10,000 addresses is not learnt at all, and the frame is counted.

    Not on udp://: one datagram (64 KB) cannot carry that many addresses.
    """
    victim, responder = scene
    before = dropped(victim.bus)
    addrs = {f"a{i}": 1 for i in range(MAX_ADDRESSES_PER_NODE + 1)}
    await victim.inject(state(victim.bus.namespace, addrs))
    await victim.flush()
    assert FAKE_NODE not in victim.bus.nodes()
    assert dropped(victim.bus) > before, "the frame was not counted under dropped.*"


async def test_a_forged_sequence_jump_does_not_freeze_a_real_node(
    scene: tuple[Victim, EventBus], address: str
) -> None:
    """A state in the real node's name with ``seq=2**62`` is dropped: its later registrations still arrive."""
    victim, responder = scene
    before = dropped(victim.bus)
    await victim.inject(state(victim.bus.namespace, {}, src=responder.node_id, seq=2**62))
    await victim.flush()
    later = unique("later")

    @responder.on(later)
    async def echo(x: int) -> int:
        return x

    seen = 0
    with suppress(TimeoutError):
        seen = await victim.bus.wait_for_handlers(later, 1, timeout=2.0)
    assert seen == 1, "the victim never learnt the real node's new address after a forged seq of 2**62"
    assert await victim.bus.request(later, 4, timeout=WAIT) == 4
    ok, others = await reached(victim, responder, address)
    assert ok == REQUESTS, f"{ok} of {REQUESTS} requests reached the real node; the others: {dict(others)}"
    assert dropped(victim.bus) > before, "the frame was not counted under dropped.*"


@pytest.mark.parametrize("hb", [3600.0, HEARTBEAT_RANGE[1] + 1, HEARTBEAT_RANGE[0] / 50], ids=["3600", "61", "0.001"])
async def test_a_heartbeat_interval_out_of_range_is_dropped(
    scene: tuple[Victim, EventBus], address: str, hb: float
) -> None:
    """A node announcing a heartbeat outside 0.05-60 s is not learnt (3,600 s would keep it three hours)."""
    victim, responder = scene
    before = dropped(victim.bus)
    await victim.inject(state(victim.bus.namespace, {address: 1}, hb=hb))
    await victim.flush()
    ok, others = await reached(victim, responder, address)
    assert ok == REQUESTS, f"{ok} of {REQUESTS} requests reached the real node; the others: {dict(others)}"
    assert FAKE_NODE not in victim.bus.nodes()
    assert dropped(victim.bus) > before, "the frame was not counted under dropped.*"


@pytest.mark.parametrize("sender", ["not-a-node-id!!!", FAKE_NODE.upper()], ids=["punctuation", "upper-case"])
async def test_a_sender_id_that_is_not_a_node_id_is_dropped(
    scene: tuple[Victim, EventBus], address: str, sender: str
) -> None:
    """A state from a sender id that is not 16 lowercase hex digits is dropped; no request raises ConfigError."""
    victim, responder = scene
    before = dropped(victim.bus)
    await victim.inject(state(victim.bus.namespace, {address: 1}, src=sender))
    await victim.flush()
    ok, others = await reached(victim, responder, address)
    assert ConfigError.__name__ not in others, f"requests raised ConfigError: {dict(others)}"
    assert ok == REQUESTS, f"{ok} of {REQUESTS} requests reached the real node; the others: {dict(others)}"
    assert sender not in victim.bus.nodes()
    assert dropped(victim.bus) > before, "the frame was not counted under dropped.*"


async def test_a_flood_of_fake_nodes_stays_under_the_node_cap(scene: tuple[Victim, EventBus], address: str) -> None:
    """Twice the node cap of fake nodes: nodes() never passes 1,024 remote nodes, and the real one stays."""
    victim, responder = scene
    before = dropped(victim.bus)
    flood = 2 * MAX_NODES
    for i in range(flood):
        await victim.inject(state(victim.bus.namespace, {"flood": 1}, src=fake_node(i)))
        if i % 32 == 31:
            await asyncio.sleep(0)  # a yield, not a wait: let the victim read its socket as a busy peer would
    await victim.flush()
    remote = len(victim.bus.nodes()) - 1
    ok, others = await reached(victim, responder, address)
    assert remote <= MAX_NODES, f"{remote} remote nodes known after {flood} fake ones announced themselves"
    assert responder.node_id in victim.bus.nodes(), "the real node was pushed out"
    assert ok == REQUESTS, f"{ok} of {REQUESTS} requests reached the real node; the others: {dict(others)}"
    assert dropped(victim.bus) > before, "the frames past the cap were not counted under dropped.*"


async def test_a_hello_flood_is_answered_at_most_once_per_heartbeat(
    net: Net, scene: tuple[Victim, EventBus], make_bus: Callable[..., EventBus], address: str
) -> None:
    """200 hellos in one sender's name, within one heartbeat, draw at most one state answer (plus one, at a boundary).

    The hellos claim a real third node (``decoy``), the one the answers would
    flood; every frame the victim sends it is captured on the medium.
    """
    victim, responder = scene
    decoy = make_bus(net.url(), namespace=victim.bus.namespace, startup_wait=0.05)
    decoy_address = unique("decoy")

    @decoy.on(decoy_address)
    async def idle() -> None:
        return None

    await decoy.start()
    await victim.bus.wait_for_handlers(decoy_address, 1, timeout=WAIT)  # its hello is answered before we look
    hellos = 200
    began = time.monotonic()
    async with net.capture() as seen:
        for i in range(hellos):
            await victim.inject(control(victim.bus.namespace, "hello", {"seq": 1, "hb": 1.0, "addrs": {}},
                                        src=decoy.node_id))
            if i % 32 == 31:
                await asyncio.sleep(0)  # a yield, not a wait: let the victim read its socket
        await victim.flush()
        assert await victim.bus.request(address, timeout=WAIT) == responder.node_id  # answers already queued go out
    took = time.monotonic() - began
    answers = [env for env in map(envelope_of, seen.payloads) if env is not None and env.kind == "ctl"
               and env.addr == "state" and env.src == victim.bus.node_id and env.dst == decoy.node_id]
    heartbeats = 1 + int(took / 5.0)  # the victim's heartbeat is 5 s
    assert len(answers) <= STATE_ANSWERS_PER_HEARTBEAT * heartbeats + 1, (
        f"{hellos} hellos in {took:.2f} s drew {len(answers)} state answers"
    )


# -- 3. a passive Redis pattern subscriber changes nothing ----------------------------------------


@pytest.fixture
async def monitor(redis_server: RedisServer) -> AsyncIterator[None]:
    """Run a passive ``PSUBSCRIBE addrbus:*`` (a monitor) on the private server for one test."""
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port, protocol=2)
    pubsub = client.pubsub()
    await pubsub.psubscribe("addrbus:*")
    try:
        yield
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


@pytest.mark.redis
async def test_a_pattern_subscriber_does_not_slow_start(
    redis_server: RedisServer, monitor: None, make_bus: Callable[..., EventBus]
) -> None:
    """With a monitor subscribed to ``addrbus:*``, a lone bus starts as fast as without (2 ms, not 2 s)."""
    bus = make_bus(redis_server.url, namespace=unique("ns"))
    began = time.monotonic()
    await bus.start()
    took = time.monotonic() - began
    assert took < 0.5, f"start() took {took:.2f} s"


@pytest.mark.redis
async def test_a_pattern_subscriber_does_not_hide_a_dead_node(
    redis_server: RedisServer, monitor: None, make_bus: Callable[..., EventBus], address: str
) -> None:
    """With a monitor subscribed, a request to a node whose inbox nobody reads fails at once with RecipientGone.

    The dead node is what a crashed one leaves behind: its last state (published
    here by a plain client) and no subscriber on its inbox.
    """
    net = RedisNet(redis_server)
    try:
        victim = Victim(net, make_bus(redis_server.url, namespace=unique("ns"), startup_wait=0.05))
        await victim.bus.start()
        await victim.inject(state(victim.bus.namespace, {address: 1}, src=fake_node(7)))
        await victim.flush()
        assert victim.bus.nodes().get(fake_node(7)) == {address: 1}
        began = time.monotonic()
        with pytest.raises(RecipientGone):
            await victim.bus.request(address, timeout=WAIT)
        took = time.monotonic() - began
        assert took < 0.5, f"the dead node was found out after {took:.2f} s"
    finally:
        await net.aclose()


# -- 12. the duplicate window the docs state is the one the code keeps -----------------------------

_IDS = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+) (?:message )?ids")


def documented_windows(page: str) -> list[int]:
    """Return every figure ``page`` gives for the message ids remembered to drop duplicates."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    return [int(n.replace(",", "")) for line in lines if "duplicate" in line.lower() for n in _IDS.findall(line)]


@pytest.mark.parametrize("page", ["docs/security.md", "docs/membership.md"])
def test_the_documented_duplicate_window_is_the_real_one(page: str) -> None:
    """Every figure the page gives for the duplicate window is the code's own."""
    figures = documented_windows(page)
    assert figures, f"{page} no longer says how many ids are remembered for duplicates"
    assert set(figures) == {dedup_window()}, f"{page} says {figures}; the code keeps {dedup_window()}"


async def test_a_duplicate_within_the_documented_window_is_dropped(
    make_bus: Callable[..., EventBus], address: str
) -> None:
    """A frame repeated after as many other ids as docs/security.md says are remembered, less one, is dropped.

    On memory://?serialize=1 only: the window is kept above the transports, and
    one transport that carries bytes shows it.
    """
    window = max(documented_windows("docs/security.md"), default=0)
    assert window > 0
    net = MemoryNet()
    bus = make_bus(net.url(), namespace=unique("ns"))
    got: list[int] = []
    arrived = asyncio.Event()

    @bus.on(address)
    async def record(x: int) -> None:
        got.append(x)
        arrived.set()

    await bus.start()
    first = frame(bus.namespace, address, 1)
    await net.inject(bus, first)
    nobody = unique("nobody")
    for _ in range(window - 1):
        await net.inject(bus, frame(bus.namespace, nobody, None))
    duplicates = counted(bus).get("duplicate", 0)
    await net.inject(bus, first)
    await net.inject(bus, frame(bus.namespace, address, 2))
    async with asyncio.timeout(WAIT):
        for _ in range(3):  # handled in order: once 2 is in, a repeat of 1 would be too
            if 2 in got:
                break
            arrived.clear()
            await arrived.wait()
    assert got == [1, 2], f"the repeat after {window - 1} other ids was delivered again: {got}"
    assert counted(bus).get("duplicate", 0) == duplicates + 1
