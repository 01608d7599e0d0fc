"""UDP multicast transport: every node of a host (or LAN) joins one group.

Each node has a group socket (every broadcast) and a node socket (sends
everything, receives the unicasts for this node). The datagram header, URL
arguments and socket options are in ``wire``; this module moves frames:
receiving, pacing, waiting on full sockets, and learning peers' addresses so
that unicasts go straight to them.

The node id saying whose a datagram is travels in the cleartext header, which
anyone can write. So when ``on_frame`` takes a ``confirm`` (the bus's does, see
``transports.base``), a datagram from a node of unknown address comes with one,
and the address is learnt only once the bus confirms that the frame opened and
its envelope's sender is the header's node. It is then kept for the node's
lifetime (a node id is new at every start; its socket never moves): no later
frame, not even a replayed genuine one, redirects it. A handler without
``confirm`` (the transport used raw) learns from every header, as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from ..._exceptions import TransportError
from ..base import ConfirmingFrameHandler, FrameHandler, Transport, accepts_confirm
from . import wire
from .send import DEFAULT_RATE, Sender
from .wire import (
    BROADCAST,
    DEST_AT,
    HEADER_SIZE,
    INTEREST,
    KIND_AT,
    MAGIC,
    MAX_PAYLOAD,
    NAMESPACE_AT,
    SENDER_AT,
    UNICAST,
)

if TYPE_CHECKING:
    import socket

__all__ = ["UdpTransport", "from_url"]

logger = logging.getLogger("addrbus.transports.udp")

DRAIN = 256  # datagrams read per wake-up, so one busy socket cannot starve the loop
MAX_PEERS = 4096
MAX_HEADERS = 4096  # publish headers kept ready, one per interest key
_COUNTERS = (
    "frames_sent frames_received bad_frames other_namespace not_for_us interest_filtered direct_unicasts"
    " group_unicasts paced_waits send_waits receive_errors unconfirmed_sources"
).split()


class UdpTransport(Transport):
    """Move frames as datagrams on one IPv4 multicast group."""

    scheme = "udp"
    max_frame_size = MAX_PAYLOAD
    passes_objects = False
    needs_heartbeat = True
    # A receive buffer of 8 MiB holds about 6,500 small datagrams (the kernel
    # charges ~1.3 KB each); 1,024 requests in flight per peer, plus their
    # replies, stay well inside it even with a few requesters at once.
    max_in_flight = 1024

    def __init__(
        self,
        group: str = wire.DEFAULT_GROUP,
        port: int = wire.DEFAULT_PORT,
        *,
        interface: str = wire.DEFAULT_INTERFACE,
        ttl: int = 0,
        loopback: bool = True,
        rate: float = DEFAULT_RATE,
    ) -> None:
        super().__init__()
        self.group = group
        self.port = port
        self.interface = interface
        self.ttl = ttl
        self.loopback = loopback
        self.rate = rate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rcvbuf = 0
        self._group_sock: socket.socket | None = None
        self._node_sock: socket.socket | None = None
        self._on_frame: FrameHandler | None = None
        self._confirming: ConfirmingFrameHandler | None = None  # on_frame, when it takes a confirm
        self._me = b""
        self._ns_field = b""
        self._payload_at = HEADER_SIZE
        self._bcast_header = b""
        self._self_addr: tuple[str, int] | None = None
        self._peers: dict[bytes, tuple[str, int]] = {}
        self._dests: dict[str, tuple[bytes, bytes]] = {}  # node id -> its id bytes, unicast header
        self._tags: dict[bytes, int] = {}  # interest tags subscribed -> how many keys have that tag
        self._keys: set[str] = set()  # interest keys subscribed
        self._headers: dict[str, bytes] = {}  # interest key -> publish header
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._out = Sender(rate, self._counts)
        self._past_drops = 0

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Join the group and deliver this node's frames to ``on_frame``.

        :raises ConfigError: for a bad node id or a namespace over 255 bytes.
        :raises TransportError: if the sockets cannot be opened or the group joined.
        """
        if self._group_sock is not None:
            raise TransportError("the UDP transport is already started")
        me = wire.node_bytes(node_id)
        ns_field = wire.namespace_field(namespace)
        try:
            socks = wire.open_sockets(self.group, self.port, self.interface, self.ttl, self.loopback)
        except OSError as exc:
            where = f"{self.group}:{self.port} on interface {self.interface}"
            raise TransportError(f"cannot join {where}: {exc}") from exc
        group_sock, node_sock, self._rcvbuf = socks
        self._me = me
        self._ns_field = ns_field
        self._payload_at = HEADER_SIZE + len(ns_field) - 1
        self._bcast_header = wire.broadcast_header(me, ns_field)
        self._self_addr = node_sock.getsockname()
        self._on_frame = on_frame
        self._confirming = cast("ConfirmingFrameHandler", on_frame) if accepts_confirm(on_frame) else None
        self._group_sock, self._node_sock = group_sock, node_sock
        self._loop = loop = asyncio.get_running_loop()
        self._out.open(node_sock, loop)
        loop.add_reader(group_sock.fileno(), self._on_readable, group_sock)
        loop.add_reader(node_sock.fileno(), self._on_readable, node_sock)
        logger.info("joined %s as node %s, namespace %r", self.describe(), node_id, namespace)
        wire.warn_if_small(self._rcvbuf, logger)
        self._set_state("connected")

    async def stop(self) -> None:
        """Leave the group, close both sockets and wake blocked senders. Idempotent."""
        socks = [s for s in (self._group_sock, self._node_sock) if s is not None]
        self._group_sock = self._node_sock = None
        if not socks:
            return
        loop = asyncio.get_running_loop()
        for sock in socks:
            self._past_drops += wire.kernel_drops(sock)
            loop.remove_reader(sock.fileno())
            loop.remove_writer(sock.fileno())
            sock.close()
        self._out.close()
        self._peers.clear()
        self._dests.clear()
        self._headers.clear()
        self._on_frame = self._confirming = None
        logger.info("left %s", self.describe())
        self._set_state("disconnected")

    def _on_readable(self, sock: socket.socket) -> None:
        # The hot path: no logging, no allocation beyond the payload and sender slices.
        on_frame = self._on_frame
        if on_frame is None:
            return
        confirming = self._confirming
        peers = self._peers
        me = self._me
        ns_field = self._ns_field
        payload_at = self._payload_at
        counts = self._counts
        tags = self._tags
        for _ in range(DRAIN):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                counts["receive_errors"] += 1
                logger.debug("receive on %s failed: %s", self.describe(), exc)
                return
            if not data.startswith(MAGIC) or not data.startswith(ns_field, NAMESPACE_AT):
                self._reject(data, addr)
                continue
            kind = data[KIND_AT]
            if kind == INTEREST:
                if data.startswith(me, SENDER_AT):
                    continue  # our own publish, looped back
                if data[DEST_AT:NAMESPACE_AT] not in tags:
                    counts["interest_filtered"] += 1  # a publish for what this node does not consume
                    continue
            elif kind == BROADCAST:
                if data.startswith(me, SENDER_AT):
                    continue  # our own broadcast, looped back
            elif kind != UNICAST:
                self._reject(data, addr)
                continue
            elif not data.startswith(me, DEST_AT):
                counts["not_for_us"] += 1
                continue
            sender = data[SENDER_AT:DEST_AT]
            counts["frames_received"] += 1
            try:
                if confirming is None:
                    if peers.get(sender) != addr:
                        self._learn(sender, addr)
                    on_frame(data[payload_at:])
                elif sender in peers:
                    on_frame(data[payload_at:])  # known, and kept whatever this one says
                else:
                    confirming(data[payload_at:], functools.partial(self._confirm, sender, addr))
            except Exception:
                logger.exception("frame handler failed on %s", self.describe())

    def _reject(self, data: bytes, addr: Any) -> None:
        if wire.is_ours(data):
            self._counts["other_namespace"] += 1
            return
        self._counts["bad_frames"] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped a bad %d-byte datagram from %s", len(data), addr)

    def _confirm(self, sender: bytes, addr: tuple[str, int], node_id: str) -> None:
        # The bus opened the frame and its envelope names node_id as the sender.
        if self._node_sock is None or sender in self._peers:
            return
        try:
            if bytes.fromhex(node_id) != sender:
                self._counts["unconfirmed_sources"] += 1
                return
        except (TypeError, ValueError):
            self._counts["unconfirmed_sources"] += 1
            return
        self._learn(sender, addr)

    def _learn(self, sender: bytes, addr: tuple[str, int]) -> None:
        peers = self._peers
        if sender not in peers and len(peers) >= MAX_PEERS:
            del peers[next(iter(peers))]  # forget the oldest: it is likely gone
        peers[sender] = addr

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Send ``frame`` to every other node of the namespace; return None.

        UDP cannot count the receivers, hence None.

        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises TransportError: if the transport is stopped or the socket stays full.
        """
        await self._out.send(self._bcast_header, frame, (self.group, self.port), timeout)
        return None

    async def publish(self, key: str, frame: Any, *, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Send ``frame`` to the group, tagged with ``key``'s digest; return None.

        Every member hears it; one not subscribed to the key drops it on
        receipt, reading the header only (:mod:`.wire`). Raises as :meth:`broadcast`.
        """
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= MAX_HEADERS:
                self._headers.clear()
            header = self._headers[key] = wire.interest_header(self._me, wire.interest_tag(key), self._ns_field)
        await self._out.send(header, frame, (self.group, self.port), timeout)
        return None

    async def subscribe(self, keys: Collection[str]) -> None:
        """Accept the publishes tagged with ``keys``' digests from now on."""
        for key in keys:
            if key not in self._keys:
                self._keys.add(key)
                tag = wire.interest_tag(key)
                self._tags[tag] = self._tags.get(tag, 0) + 1

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Drop the publishes tagged with ``keys``' digests from now on."""
        for key in keys:
            if key in self._keys:
                self._keys.discard(key)
                tag = wire.interest_tag(key)
                left = self._tags.pop(tag) - 1
                if left:
                    self._tags[tag] = left

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Send ``frame`` to ``node_id`` only.

        Straight to the node's socket once its address is known, else via the group.

        :returns: True always: UDP cannot know whether anybody received it.
        :raises MessageTooLarge: if the frame exceeds :attr:`max_frame_size`.
        :raises TransportError: if the transport is stopped or the socket stays full.
        """
        known = self._dests.get(node_id)
        if known is None:
            known = self._dest(node_id)
        dest, header = known
        addr = self._self_addr if dest == self._me else self._peers.get(dest)
        if addr is None:
            await self._out.send(header, frame, (self.group, self.port), timeout)
            self._counts["group_unicasts"] += 1
        else:
            await self._out.send(header, frame, addr, timeout)
            self._counts["direct_unicasts"] += 1
        return True

    def _dest(self, node_id: str) -> tuple[bytes, bytes]:
        # Validating and building a unicast header once per node keeps it off the hot path.
        dest = wire.node_bytes(node_id)
        if len(self._dests) >= MAX_PEERS:
            self._dests.clear()
        known = self._dests[node_id] = (dest, wire.unicast_header(self._me, dest, self._ns_field))
        return known

    def stats(self) -> dict[str, int]:
        """Return frame counters, kernel drops and how many peer addresses are known."""
        drops = self._past_drops
        for sock in (self._group_sock, self._node_sock):
            if sock is not None:
                drops += wire.kernel_drops(sock)
        return {**self._counts, "kernel_drops": drops, "known_peers": len(self._peers), "rcvbuf": self._rcvbuf,
                "interest_subscriptions": len(self._keys)}

    def describe(self) -> str:
        """Return the URL with every argument spelt out."""
        loop = int(self.loopback)
        rate = f"{self.rate:g}"
        return f"udp://{self.group}:{self.port}?interface={self.interface}&ttl={self.ttl}&loopback={loop}&rate={rate}"


def from_url(url: str) -> UdpTransport:
    """Build a UDP transport from ``udp://GROUP:PORT?interface=...&ttl=...&loopback=...&rate=...``.

    :raises ConfigError: for a group that is not multicast, a bad port or an
        unknown argument.
    """
    group, port, options = wire.parse_url(url)
    return UdpTransport(group, port, **options)
