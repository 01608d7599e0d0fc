"""UDP multicast transport: every node of a host (or LAN) joins one group.

Wire format of one datagram (all sizes in bytes)::

    0   2  magic   0xAD 0xB5
    2   1  version 1
    3   1  kind    0 = broadcast, 1 = unicast
    4   8  sender node id
    12  8  destination node id (zeros for a broadcast)
    20  1  n = length of the namespace in UTF-8 (0-255)
    21  n  namespace
    21+n   payload

The namespace travels verbatim behind its length, so two namespaces can never
be mistaken for one another ("a" is ``01 61``, "a.b" is ``03 61 2e 62``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import re
import socket
import struct
from typing import Any, cast
from urllib.parse import urlsplit

from .._exceptions import ConfigError, MessageTooLarge, TransportError
from .._urls import parse_query, to_bool
from .base import FrameHandler, Transport

logger = logging.getLogger(__name__)

DEFAULT_GROUP = "239.255.0.1"
DEFAULT_PORT = 5000
DEFAULT_INTERFACE = "127.0.0.1"

MAGIC = b"\xad\xb5\x01"
_BROADCAST = 0
_UNICAST = 1
_SENDER_AT = 4
_DEST_AT = 12
_NAMESPACE_AT = 20
HEADER_SIZE = 21  # without the namespace bytes
MAX_NAMESPACE = 255
MAX_DATAGRAM = 65_507  # 65,535 minus the IPv4 and UDP headers
# Fixed whatever the namespace, so the bus can read it before start().
MAX_PAYLOAD = MAX_DATAGRAM - HEADER_SIZE - MAX_NAMESPACE

RCVBUF = 8 * 1024 * 1024
DEFAULT_RATE = 64.0  # MiB per second, see _send
BURST_BYTES = 256 * 1024  # sent unpaced; below the smallest usual receive buffer (416 KiB)
OVERHEAD = 1024  # what the kernel charges a receive buffer per datagram, beyond the payload
BURST = 32  # datagrams sent between two yields, so receivers on our own loop drain
DRAIN = 256  # datagrams read per wake-up, so one busy socket cannot starve the loop
DEFAULT_TIMEOUT = 5.0
MAX_PEERS = 4096
_ALL = bytes(8)
_warned_rcvbuf = False  # the receive buffer warning is given once per process

# Linux values the socket module does not export.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_NODE_ID = re.compile(r"[0-9a-f]{16}")
_COUNTERS = (
    "frames_sent frames_received bad_frames other_namespace not_for_us direct_unicasts group_unicasts"
    " paced_waits send_waits receive_errors"
).split()


def _node_bytes(node_id: str) -> bytes:
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise ConfigError(f"bad node id {node_id!r}: expected 16 lowercase hex digits")
    return bytes.fromhex(node_id)


def _interface(raw: str) -> str:
    addr = ipaddress.IPv4Address(raw)
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"expected the IPv4 address of one local interface, such as 127.0.0.1, not {raw!r}")
    return str(addr)


def _rate(raw: str) -> float:
    rate = float(raw)
    if not 0 <= rate < float("inf"):
        raise ValueError(f"expected MiB per second, 0 for no cap, got {raw!r}")
    return rate


def _ttl(raw: str) -> int:
    ttl = int(raw)
    if not 0 <= ttl <= 255:
        raise ValueError(f"expected a TTL from 0 (this host only) to 255, got {raw!r}")
    return ttl


def _send_error(addr: tuple[str, int], exc: OSError) -> TransportError:
    return TransportError(f"UDP send to {addr[0]}:{addr[1]} failed: {exc}")


def _kernel_drops(sock: socket.socket) -> int:
    """Return the datagrams the kernel dropped for ``sock`` (a full buffer, mostly)."""
    try:
        size = 4 * (_SK_MEMINFO_DROPS + 1)
        info = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, size)
        if len(info) >= size:
            return int(struct.unpack_from("=I", info, 4 * _SK_MEMINFO_DROPS)[0])
    except OSError:
        pass
    # Kernels without SO_MEMINFO drops still show them in /proc/net/udp.
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open("/proc/net/udp", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 12 and fields[9] == inode:
                    return int(fields[-1])
    except (OSError, ValueError):
        pass
    return 0


class UdpTransport(Transport):
    """Move frames as datagrams on one IPv4 multicast group."""

    scheme = "udp"
    max_frame_size = MAX_PAYLOAD
    passes_objects = False
    needs_heartbeat = True

    def __init__(
        self,
        group: str = DEFAULT_GROUP,
        port: int = DEFAULT_PORT,
        *,
        interface: str = DEFAULT_INTERFACE,
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
        self._bytes_per_s = rate * 1024 * 1024
        self._next_slot = 0.0  # loop time at which the pacer lets the next datagram go
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rcvbuf = 0
        self._group_sock: socket.socket | None = None
        self._node_sock: socket.socket | None = None
        self._on_frame: FrameHandler | None = None
        self._me = b""
        self._ns_field = b""
        self._payload_at = HEADER_SIZE
        self._bcast_header = b""
        self._ucast_head = b""
        self._self_addr: tuple[str, int] | None = None
        self._peers: dict[bytes, tuple[str, int]] = {}
        self._dests: dict[str, tuple[bytes, bytes]] = {}  # node id -> its id bytes, unicast header
        self._writable: asyncio.Future[None] | None = None
        self._since_yield = 0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._past_drops = 0

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        """Join the group and deliver this node's frames to ``on_frame``.

        :raises ConfigError: for a bad node id or a namespace over 255 bytes.
        :raises TransportError: if the sockets cannot be opened or the group joined.
        """
        if self._group_sock is not None:
            raise TransportError("the UDP transport is already started")
        me = _node_bytes(node_id)
        ns = namespace.encode("utf-8")
        if len(ns) > MAX_NAMESPACE:
            raise ConfigError(
                f"namespace of {len(ns)} bytes is too long for udp:// (at most {MAX_NAMESPACE} bytes in UTF-8)"
            )
        try:
            group_sock, node_sock = self._open_sockets()
        except OSError as exc:
            where = f"{self.group}:{self.port} on interface {self.interface}"
            raise TransportError(f"cannot join {where}: {exc}") from exc
        self._me = me
        self._ns_field = bytes((len(ns),)) + ns
        self._payload_at = HEADER_SIZE + len(ns)
        self._bcast_header = MAGIC + bytes((_BROADCAST,)) + me + _ALL + self._ns_field
        self._ucast_head = MAGIC + bytes((_UNICAST,)) + me
        self._self_addr = node_sock.getsockname()
        self._on_frame = on_frame
        self._group_sock, self._node_sock = group_sock, node_sock
        self._loop = loop = asyncio.get_running_loop()
        self._next_slot = 0.0
        loop.add_reader(group_sock.fileno(), self._on_readable, group_sock)
        loop.add_reader(node_sock.fileno(), self._on_readable, node_sock)
        logger.info("joined %s as node %s, namespace %r", self.describe(), node_id, namespace)
        global _warned_rcvbuf
        if self._rcvbuf < RCVBUF and not _warned_rcvbuf:
            _warned_rcvbuf = True
            logger.warning(
                "UDP receive buffer is %d bytes, not %d: bursts may be dropped; raise it with"
                " sysctl -w net.core.rmem_max=%d (or grant CAP_NET_ADMIN)",
                self._rcvbuf,
                2 * RCVBUF,
                RCVBUF,
            )
        self._set_state("connected")

    def _open_sockets(self) -> tuple[socket.socket, socket.socket]:
        group_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        node_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Several nodes of one host share the group port.
            group_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                group_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                # Else Linux also hands us the group's traffic from other interfaces.
                group_sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            except OSError:
                pass
            # Bound to the group, not 0.0.0.0: no unicast traffic to the port gets in.
            group_sock.bind((self.group, self.port))
            mreq = socket.inet_aton(self.group) + socket.inet_aton(self.interface)
            group_sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            # The node socket sends everything; peers learn its address from the
            # source of our datagrams and unicast straight back to it.
            node_sock.bind((self.interface, 0))
            ip = socket.IPPROTO_IP
            node_sock.setsockopt(ip, socket.IP_MULTICAST_IF, mreq[4:])
            node_sock.setsockopt(ip, socket.IP_MULTICAST_TTL, self.ttl)
            node_sock.setsockopt(ip, socket.IP_MULTICAST_LOOP, int(self.loopback))
            # Direct unicasts reach no further than the multicast TTL would.
            node_sock.setsockopt(ip, socket.IP_TTL, max(self.ttl, 1))
            for sock in (group_sock, node_sock):
                self._grow_rcvbuf(sock)
                sock.setblocking(False)
        except BaseException:
            group_sock.close()
            node_sock.close()
            raise
        return group_sock, node_sock

    def _grow_rcvbuf(self, sock: socket.socket) -> None:
        # SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN.
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        # Linux doubles the request, capped at rmem_max, and charges each datagram's
        # overhead against the result: that doubled figure is the real capacity.
        self._rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    async def stop(self) -> None:
        """Leave the group, close both sockets and wake blocked senders. Idempotent."""
        socks = [s for s in (self._group_sock, self._node_sock) if s is not None]
        self._group_sock = self._node_sock = None
        if not socks:
            return
        loop = asyncio.get_running_loop()
        for sock in socks:
            self._past_drops += _kernel_drops(sock)
            loop.remove_reader(sock.fileno())
            loop.remove_writer(sock.fileno())
            sock.close()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # senders wake, see no socket, raise
        self._writable = None
        self._peers.clear()
        self._dests.clear()
        self._on_frame = None
        logger.info("left %s", self.describe())
        self._set_state("disconnected")

    def _on_readable(self, sock: socket.socket) -> None:
        # The hot path: no logging, no allocation beyond the payload and sender slices.
        on_frame = self._on_frame
        if on_frame is None:
            return
        peers = self._peers
        me = self._me
        ns_field = self._ns_field
        payload_at = self._payload_at
        counts = self._counts
        for _ in range(DRAIN):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                counts["receive_errors"] += 1
                logger.debug("receive on %s failed: %s", self.describe(), exc)
                return
            if not data.startswith(MAGIC) or not data.startswith(ns_field, _NAMESPACE_AT):
                self._reject(data, addr)
                continue
            kind = data[3]
            if kind == _BROADCAST:
                if data.startswith(me, _SENDER_AT):
                    continue  # our own broadcast, looped back
            elif kind != _UNICAST:
                self._reject(data, addr)
                continue
            elif not data.startswith(me, _DEST_AT):
                counts["not_for_us"] += 1
                continue
            sender = data[_SENDER_AT:_DEST_AT]
            if peers.get(sender) != addr:
                self._learn(sender, addr)
            counts["frames_received"] += 1
            try:
                on_frame(data[payload_at:])
            except Exception:
                logger.exception("frame handler failed on %s", self.describe())

    def _reject(self, data: bytes, addr: Any) -> None:
        kinds = (_BROADCAST, _UNICAST)
        if data.startswith(MAGIC) and len(data) > _NAMESPACE_AT and data[3] in kinds:
            self._counts["other_namespace"] += 1
            return
        self._counts["bad_frames"] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped a bad %d-byte datagram from %s", len(data), addr)

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
        await self._send(self._bcast_header, frame, (self.group, self.port), timeout)
        return None

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
            await self._send(header, frame, (self.group, self.port), timeout)
            self._counts["group_unicasts"] += 1
        else:
            await self._send(header, frame, addr, timeout)
            self._counts["direct_unicasts"] += 1
        return True

    def _dest(self, node_id: str) -> tuple[bytes, bytes]:
        # Validating and building a unicast header once per node keeps it off the hot path.
        dest = _node_bytes(node_id)
        if len(self._dests) >= MAX_PEERS:
            self._dests.clear()
        known = self._dests[node_id] = (dest, self._ucast_head + dest + self._ns_field)
        return known

    async def _send(self, header: bytes, frame: Any, addr: tuple[str, int], limit: float | None) -> None:
        size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
        if size > MAX_PAYLOAD:
            raise MessageTooLarge(size, MAX_PAYLOAD, scheme="udp")
        sock = self._node_sock
        if sock is None or self._loop is None:
            raise TransportError("the UDP transport is not started")
        if self._bytes_per_s:
            # Pacing: each datagram books a slot on a virtual clock, costing what it
            # will take of a receive buffer; bursts up to BURST_BYTES go at once.
            now = self._loop.time()
            slot = max(self._next_slot, now - BURST_BYTES / self._bytes_per_s)
            if slot > now:
                bound = DEFAULT_TIMEOUT if limit is None else limit
                if slot - now > bound:
                    raise TransportError(f"UDP send timed out after {bound}s queued behind the {self.rate} MiB/s cap")
                self._next_slot = slot + (size + OVERHEAD) / self._bytes_per_s
                self._counts["paced_waits"] += 1
                self._since_yield = 0
                await asyncio.sleep(slot - now)
                limit = bound - (slot - now)
                sock = self._node_sock
                if sock is None:
                    raise TransportError("the UDP transport stopped during a send")
            else:
                self._next_slot = slot + (size + OVERHEAD) / self._bytes_per_s
        try:
            sock.sendmsg((header, frame), (), 0, addr)
        except (BlockingIOError, InterruptedError):
            await self._send_later(header, frame, addr, limit, errno.EAGAIN)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise _send_error(addr, exc) from exc
            await self._send_later(header, frame, addr, limit, errno.ENOBUFS)
        self._counts["frames_sent"] += 1
        self._since_yield += 1
        if self._since_yield >= BURST:
            # Receivers on our own event loop drain only when we yield.
            self._since_yield = 0
            await asyncio.sleep(0)

    async def _send_later(
        self, header: bytes, frame: Any, addr: tuple[str, int], limit: float | None, err: int
    ) -> None:
        loop = asyncio.get_running_loop()
        bound = DEFAULT_TIMEOUT if limit is None else limit
        deadline = loop.time() + bound
        delay = 0.0005
        while True:
            self._counts["send_waits"] += 1
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    if err == errno.ENOBUFS:
                        # No writability event exists for ENOBUFS: back off briefly.
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.05)
                    else:
                        await asyncio.shield(self._wait_writable(loop))
            except TimeoutError:
                raise TransportError(f"UDP send timed out after {bound}s: the socket stayed full") from None
            sock = self._node_sock
            if sock is None:
                raise TransportError("the UDP transport stopped during a send")
            try:
                sock.sendmsg((header, frame), (), 0, addr)
                return
            except (BlockingIOError, InterruptedError):
                err = errno.EAGAIN
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise _send_error(addr, exc) from exc
                err = errno.ENOBUFS

    def _wait_writable(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        # One shared future: a file descriptor has a single writer callback.
        if self._writable is None or self._writable.done():
            assert self._node_sock is not None
            fd = self._node_sock.fileno()
            future: asyncio.Future[None] = loop.create_future()

            def ready() -> None:
                loop.remove_writer(fd)
                if not future.done():
                    future.set_result(None)

            loop.add_writer(fd, ready)
            self._writable = future
        return self._writable

    def stats(self) -> dict[str, int]:
        """Return frame counters, kernel drops and how many peer addresses are known."""
        drops = self._past_drops
        for sock in (self._group_sock, self._node_sock):
            if sock is not None:
                drops += _kernel_drops(sock)
        return {**self._counts, "kernel_drops": drops, "known_peers": len(self._peers), "rcvbuf": self._rcvbuf}

    def describe(self) -> str:
        """Return the URL with every argument spelt out."""
        loop = int(self.loopback)
        rate = f"{self.rate:g}"
        return f"udp://{self.group}:{self.port}?interface={self.interface}&ttl={self.ttl}&loopback={loop}&rate={rate}"


def from_url(url: str) -> UdpTransport:
    """Build a UDP transport from ``udp://GROUP:PORT?interface=...&ttl=...&loopback=...``.

    :raises ConfigError: for a group that is not multicast, a bad port or an
        unknown argument.
    """
    parts = urlsplit(url)
    host = parts.hostname or DEFAULT_GROUP
    try:
        port = DEFAULT_PORT if parts.port is None else parts.port
        if port == 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"bad port in {url!r}: expected udp://GROUP:PORT, PORT from 1 to 65535") from None
    try:
        if not ipaddress.IPv4Address(host).is_multicast:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"bad group {host!r} in {url!r}: expected an IPv4 multicast address"
            " (224.0.0.0 to 239.255.255.255; 239.255.0.0/16 is for private use),"
            f" such as {DEFAULT_GROUP}"
        ) from None
    if parts.username is not None or parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"unexpected user, path or fragment in {url!r}: expected udp://GROUP:PORT")
    converters = {"interface": _interface, "ttl": _ttl, "loopback": to_bool, "rate": _rate}
    options = parse_query(url, converters)
    return UdpTransport(
        str(ipaddress.IPv4Address(host)),
        port,
        interface=cast(str, options.get("interface", DEFAULT_INTERFACE)),
        ttl=cast(int, options.get("ttl", 0)),
        loopback=cast(bool, options.get("loopback", True)),
        rate=cast(float, options.get("rate", DEFAULT_RATE)),
    )
