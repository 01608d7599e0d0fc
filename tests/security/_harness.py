"""Reach a bus's transport as an outsider: inject raw frames, capture what travels.

A :class:`Net` is one transport under test (``memory://NAME?serialize=1``,
``udp://`` multicast, ``redis://``). It builds bus URLs, hands raw payloads to
a bus the way a non-bus could (a datagram with a forged-but-valid transport
header, a plain ``PUBLISH`` on the bus's channel, a call on a hub member), and
captures every unit that crosses the medium, so a test can look at exactly
what an eavesdropper would see and replay it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
import redis.asyncio as aioredis

from addrbus import EventBus
from addrbus._wire.bodies import encode_body
from addrbus._wire.envelope import Envelope
from addrbus._wire.frames import encode_frame
from addrbus._wire.sealing import Sealer
from addrbus.transports import udp
from addrbus.transports.memory import MemoryHub, _hubs
from addrbus.transports.nats import subjects as nats_subjects
from addrbus.transports.nats.transport import _confirmed as confirmed
from addrbus.transports.redis import wire as redis_wire
from tests.conftest import unique
from tests.fixtures_nats import NatsServer
from tests.fixtures_redis import RedisServer
from tests.transports.test_udp import udp_url

WAIT = 10.0  # seconds: a generous bound on waits that should take milliseconds
FAKE_NODE = "0badc0de0badc0de"  # the node id an outsider claims to be
_ids = iter(range(1, 1 << 62))


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds, polling every few ms; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


def progressed(bus: EventBus, handled: list[Any], before: dict[str, int]) -> Callable[[], bool]:
    """Return a predicate: something reached the handler, or another frame was counted."""
    base = sum(before.values())
    return lambda: bool(handled) or sum(counted(bus).values()) > base


def counted(bus: EventBus) -> dict[str, int]:
    """Return the bus's drop counters by reason, plus ``invalid_body`` (bodies that failed validation)."""
    stats = bus.stats()
    result = {k.removeprefix("dropped."): v for k, v in stats.items() if k.startswith("dropped.") and v}
    if stats.get("failures.invalid_body"):
        result["invalid_body"] = stats["failures.invalid_body"]
    return result


class Recorder(list[Any]):
    """Keep the bodies its async handler gets, in order (a plain def would run in threads)."""

    async def handler(self, body: Any) -> str:
        self.append(body)
        return "ok"


def new_id() -> str:
    """Return a message id no bus has used."""
    return f"{FAKE_NODE}-x{next(_ids):x}"


def frame(namespace: str, address: str, body: Any = None, *, kind: str = "pub", **fields: Any) -> bytes:
    """Encode a valid cleartext frame, as a bus of ``namespace`` would send it."""
    fields.setdefault("id", new_id())
    fields.setdefault("src", FAKE_NODE)
    fields.setdefault("ts", time.time())
    env = Envelope(kind=kind, ns=namespace, addr=address, **fields)
    return encode_frame(env, encode_body(body))


def sealed(key: Any, data: bytes, *, age: float = 0.0) -> bytes:
    """Seal ``data`` with ``key`` as a key holder would have ``age`` seconds ago."""
    return Sealer(key, clock=lambda: time.time() - age).seal(data)


def opened(key: Any, data: bytes) -> bytes | None:
    """Return what ``data`` seals under ``key`` (ignoring its age), or None."""
    from addrbus._wire.sealing import SealRejected

    try:
        return Sealer(key, ttl=3600, max_future=3600).open(data)
    except SealRejected:
        return None


@dataclass
class Unit:
    """One unit as it crossed the medium, and the bus frame inside it."""

    raw: bytes  # everything an eavesdropper sees (datagram; channel + data; frame)
    payload: bytes  # the bus frame, without the transport's own header
    where: Any  # what replay() needs to put it back on the medium


class Capture:
    """Every unit seen on the medium while it is open."""

    def __init__(self) -> None:
        self.units: list[Unit] = []

    @property
    def payloads(self) -> list[bytes]:
        return [u.payload for u in self.units]


class Net:
    """One transport under test, reached from outside any bus."""

    name = ""
    #: Sealed and oversized frames can reach the bus (False for an object-passing hub).
    carries_bytes = True

    def url(self, **query: str) -> str:
        raise NotImplementedError

    async def inject(self, bus: EventBus, payload: bytes, *, direct: bool = False) -> None:
        """Hand ``payload`` to ``bus`` (to all of its namespace, or to it alone with ``direct``)."""
        raise NotImplementedError

    async def replay(self, unit: Unit) -> None:
        """Put a captured unit back on the medium, byte for byte."""
        raise NotImplementedError

    def capture(self) -> Any:
        """Return an async context manager that yields a :class:`Capture`."""
        raise NotImplementedError

    @property
    def max_payload(self) -> int:
        """The largest payload the bus accepts on this transport."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class MemoryNet(Net):
    """``memory://NAME?serialize=1``: frames are bytes handed to each hub member."""

    name = "memory"

    def __init__(self) -> None:
        self.hub = unique("hub")

    def url(self, **query: str) -> str:
        return f"memory://{self.hub}?serialize=1"

    @property
    def max_payload(self) -> int:
        return 2**31

    async def inject(self, bus: EventBus, payload: bytes, *, direct: bool = False) -> None:
        members = _hubs[self.hub].nodes[bus.namespace]
        targets = [bus.node_id] if direct else list(members)
        for node in targets:
            members[node](payload)

    async def replay(self, unit: Unit) -> None:
        namespace, node = unit.where
        member = _hubs[self.hub].nodes.get(namespace, {}).get(node)
        if member is not None:
            member(unit.payload)

    @asynccontextmanager
    async def capture(self) -> AsyncIterator[Capture]:
        # Every member of the hub, present or joining later, is wrapped by a spy.
        cap = Capture()
        hub = _hubs.setdefault(self.hub, MemoryHub(self.hub))
        plain = hub.nodes
        hub.nodes = _SpyNamespaces(cap, plain)
        try:
            yield cap
        finally:
            spied, hub.nodes = hub.nodes, plain
            plain.clear()
            for namespace, members in spied.items():
                plain[namespace] = {node: getattr(m, "member", m) for node, m in members.items()}


class _SpyMembers(dict[str, Any]):
    def __init__(self, cap: Capture, namespace: str, members: dict[str, Any]) -> None:
        super().__init__()
        self.cap, self.namespace = cap, namespace
        for node, member in members.items():
            self[node] = member

    def __setitem__(self, node: str, member: Any) -> None:
        cap, where = self.cap, (self.namespace, node)

        def spy(data: Any) -> None:
            cap.units.append(Unit(data, data, where))
            member(data)

        spy.member = member  # type: ignore[attr-defined]
        super().__setitem__(node, spy)


class _SpyNamespaces(dict[str, Any]):
    def __init__(self, cap: Capture, plain: dict[str, dict[str, Any]]) -> None:
        super().__init__({ns: _SpyMembers(cap, ns, members) for ns, members in plain.items()})
        self.cap = cap

    def setdefault(self, namespace: str, default: Any = None) -> Any:
        if namespace not in self:
            super().__setitem__(namespace, _SpyMembers(self.cap, namespace, {}))
        return self[namespace]


_ETH_HEADER = 14


class UdpNet(Net):
    """``udp://`` multicast on ``lo``: datagrams on the group, sniffed with AF_PACKET."""

    name = "udp"

    def __init__(self) -> None:
        self._url = udp_url()
        parts = urlsplit(self._url)
        self.group, self.port = str(parts.hostname), int(parts.port or 0)
        self.sender = bytes.fromhex(FAKE_NODE)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.bind(("127.0.0.1", 0))

    def url(self, **query: str) -> str:
        return self._url

    @property
    def max_payload(self) -> int:
        return udp.MAX_PAYLOAD

    def header(self, namespace: str, dest: str | None = None) -> bytes:
        """Return a valid transport header, as a node of ``namespace`` would write it."""
        ns = namespace.encode()
        kind, dst = (b"\x00", bytes(8)) if dest is None else (b"\x01", bytes.fromhex(dest))
        return udp.MAGIC + kind + self.sender + dst + bytes((len(ns),)) + ns

    async def inject(self, bus: EventBus, payload: bytes, *, direct: bool = False) -> None:
        head = self.header(bus.namespace, bus.node_id if direct else None)
        self.sock.sendto(head + payload, (self.group, self.port))

    async def replay(self, unit: Unit) -> None:
        self.sock.sendto(unit.raw, unit.where)

    @asynccontextmanager
    async def capture(self) -> AsyncIterator[Capture]:
        # A packet socket on lo sees every datagram: to the group, and the direct
        # unicasts from node to node.
        cap = Capture()
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sniffer.bind(("lo", 0))
        sniffer.setblocking(False)
        end = b"addrbus-capture-end-" + random.randbytes(8).hex().encode()
        try:
            yield cap
            # lo delivers in order: once our own marker is seen, so is all before it.
            self.sock.sendto(end, self.sock.getsockname())
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(WAIT):
                while True:
                    data = await loop.sock_recv(sniffer, 70_000)
                    ip = data[_ETH_HEADER:]
                    if ip[9] != socket.IPPROTO_UDP:
                        continue
                    ihl = (ip[0] & 0x0F) * 4
                    dst = (socket.inet_ntoa(ip[16:20]), int.from_bytes(ip[ihl + 2 : ihl + 4], "big"))
                    datagram = ip[ihl + 8 :]
                    if datagram == end:
                        break
                    if not datagram.startswith(udp.MAGIC) or len(datagram) <= udp.HEADER_SIZE:
                        continue
                    start = udp.HEADER_SIZE + datagram[udp.HEADER_SIZE - 1]
                    cap.units.append(Unit(datagram, datagram[start:], dst))
        finally:
            sniffer.close()

    async def aclose(self) -> None:
        self.sock.close()


class RedisNet(Net):
    """``redis://``: a plain client publishes on, and pattern-subscribes to, the bus's channels."""

    name = "redis"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.client = aioredis.Redis(host="127.0.0.1", port=server.port, password=server.password, protocol=2)

    def url(self, **query: str) -> str:
        args = "&".join(f"{k}={v}" for k, v in query.items())
        return self.server.url + (f"?{args}" if args else "")

    @property
    def max_payload(self) -> int:
        from addrbus.transports.redis.options import DEFAULT_MAX_FRAME

        return DEFAULT_MAX_FRAME

    async def inject(self, bus: EventBus, payload: bytes, *, direct: bool = False) -> None:
        prefix = redis_wire.channel_prefix(bus.namespace)
        if direct:
            await self.client.publish(redis_wire.inbox_channel(prefix, bus.node_id), payload)
        else:
            await self.client.publish(redis_wire.broadcast_channel(prefix), self.sender + payload)

    sender = bytes.fromhex(FAKE_NODE)

    async def replay(self, unit: Unit) -> None:
        channel, data = unit.where
        await self.client.publish(channel, data)

    @asynccontextmanager
    async def capture(self) -> AsyncIterator[Capture]:
        cap = Capture()
        pubsub = self.client.pubsub()
        await pubsub.psubscribe(b"addrbus:*")
        end = b"addrbus:~capture-end:" + random.randbytes(8).hex().encode()
        try:
            yield cap
            # Redis delivers in the order it executed: once our marker is back,
            # everything published before it has been seen.
            await self.client.publish(end, b"")
            async with asyncio.timeout(WAIT):
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
                    if msg is None or msg["type"] != "pmessage":
                        continue
                    channel, data = msg["channel"], msg["data"]
                    if channel == end:
                        break
                    if b":h:" in channel:
                        continue  # a node's ping to itself: an empty payload, no frame
                    # Broadcasts and publishes (a channel per interest key) lead with the sender id.
                    led = channel.endswith(b":b") or b":a:" in channel
                    payload = data[8:] if led else data
                    cap.units.append(Unit(channel + b" " + data, payload, (channel, data)))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await self.client.aclose()


class NatsNet(Net):
    """``nats://``: a plain nats-py client publishes on, and subscribes to, every subject of the bus."""

    name = "nats"

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.client: Any = None

    async def _client(self) -> Any:
        if self.client is None:
            self.client = await nats.connect(self.server.url)
        return self.client

    def url(self, **query: str) -> str:
        args = "&".join(f"{k}={v}" for k, v in query.items())
        return self.server.url + (f"?{args}" if args else "")

    @property
    def max_payload(self) -> int:
        from addrbus.transports.nats.transport import DEFAULT_MAX_FRAME

        return DEFAULT_MAX_FRAME

    async def inject(self, bus: EventBus, payload: bytes, *, direct: bool = False) -> None:
        client = await self._client()
        prefix = nats_subjects.prefix(bus.namespace)
        subject = nats_subjects.inbox(prefix, bus.node_id) if direct else nats_subjects.broadcast(prefix)
        await client.publish(subject, payload)
        await client.flush()

    async def replay(self, unit: Unit) -> None:
        client = await self._client()
        subject, data = unit.where
        await client.publish(subject, data)
        await client.flush()

    @asynccontextmanager
    async def capture(self) -> AsyncIterator[Capture]:
        cap = Capture()
        client = await self._client()
        seen: asyncio.Queue[Any] = asyncio.Queue()

        async def keep(msg: Any) -> None:
            seen.put_nowait(msg)

        sub = await client.subscribe("addrbus.>", cb=keep)
        await confirmed(client, WAIT)  # flush() alone can return before the server has the SUB
        end = "addrbus.~capture-end." + random.randbytes(8).hex()
        try:
            yield cap
            # One server delivers in the order it processed: once our marker is back,
            # everything published before it has been seen.
            await client.publish(end, b"")
            async with asyncio.timeout(WAIT):
                while True:
                    msg = await seen.get()
                    if msg.subject == end:
                        break
                    subject = msg.subject.encode()
                    cap.units.append(Unit(subject + b" " + msg.data, msg.data, (msg.subject, msg.data)))
        finally:
            await sub.unsubscribe()

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()
