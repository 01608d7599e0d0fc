"""The udp:// datagram header, URL arguments and sockets; the transport itself is in transport.py.

Wire format of one datagram (all sizes in bytes)::

    0   2  magic   0xAD 0xB5
    2   1  version 1
    3   1  kind    0 = broadcast, 1 = unicast, 2 = publish
    4   8  sender node id
    12  8  destination node id (zeros for a broadcast; for a publish, the
           interest tag: the first 8 bytes of BLAKE2b of the interest key)
    20  1  n = length of the namespace in UTF-8 (0-255)
    21  n  namespace
    21+n   payload

Every member of the group hears a publish; a node that did not subscribe to
its tag drops it after reading 20 bytes of header, before any decoding or
decryption. The tag names no address on a sealed bus: its interest key is
already a keyed digest.

The namespace travels verbatim behind its length, so two namespaces can never
be mistaken for one another ("a" is ``01 61``, "a.b" is ``03 61 2e 62``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

from ..._exceptions import ConfigError
from .._urls import parse_query, to_bool

DEFAULT_GROUP = "239.255.0.1"
DEFAULT_PORT = 5000
DEFAULT_INTERFACE = "127.0.0.1"

MAGIC = b"\xad\xb5\x01"  # magic and version: one prefix test on the hot path
BROADCAST = 0
UNICAST = 1
INTEREST = 2
TAG_SIZE = 8
KIND_AT = 3
SENDER_AT = 4
DEST_AT = 12
NAMESPACE_AT = 20
HEADER_SIZE = 21  # without the namespace bytes
MAX_NAMESPACE = 255
MAX_DATAGRAM = 65_507  # 65,535 minus the IPv4 and UDP headers
# Fixed whatever the namespace, so the bus can read it before start().
MAX_PAYLOAD = MAX_DATAGRAM - HEADER_SIZE - MAX_NAMESPACE
ALL = bytes(8)  # the destination of a broadcast

RCVBUF = 8 * 1024 * 1024
_warned_rcvbuf = False  # the receive buffer warning is given once per process

# Linux values the socket module does not export.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_NODE_ID = re.compile(r"[0-9a-f]{16}")


def node_bytes(node_id: str) -> bytes:
    """Return the 8 bytes of a node id.

    :raises ConfigError: unless ``node_id`` is 16 lowercase hex digits.
    """
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise ConfigError(f"bad node id {node_id!r}: expected 16 lowercase hex digits")
    return bytes.fromhex(node_id)


def namespace_field(namespace: str) -> bytes:
    """Return the length-prefixed namespace of the header.

    :raises ConfigError: for a namespace over 255 bytes of UTF-8.
    """
    ns = namespace.encode("utf-8")
    if len(ns) > MAX_NAMESPACE:
        raise ConfigError(
            f"namespace of {len(ns)} bytes is too long for udp:// (at most {MAX_NAMESPACE} bytes in UTF-8)"
        )
    return bytes((len(ns),)) + ns


def broadcast_header(me: bytes, ns_field: bytes) -> bytes:
    """Return the header of every broadcast from node ``me``."""
    return MAGIC + bytes((BROADCAST,)) + me + ALL + ns_field


def unicast_header(me: bytes, dest: bytes, ns_field: bytes) -> bytes:
    """Return the header of every unicast from node ``me`` to node ``dest``."""
    return MAGIC + bytes((UNICAST,)) + me + dest + ns_field


def interest_header(me: bytes, tag: bytes, ns_field: bytes) -> bytes:
    """Return the header of a publish from node ``me`` under interest tag ``tag``."""
    return MAGIC + bytes((INTEREST,)) + me + tag + ns_field


def interest_tag(key: str) -> bytes:
    """Return the 8-byte tag of interest key ``key`` (its BLAKE2b digest, cut)."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=TAG_SIZE).digest()


def is_ours(data: bytes) -> bool:
    """Tell whether a rejected datagram is of this protocol (another namespace), not garbage."""
    return data.startswith(MAGIC) and len(data) > NAMESPACE_AT and data[KIND_AT] in (BROADCAST, UNICAST, INTEREST)


# -- URL arguments -------------------------------------------------------------------------------


def parse_interface(raw: str) -> str:
    """Check the ``interface`` argument: the IPv4 address of one local interface."""
    addr = ipaddress.IPv4Address(raw)
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"expected the IPv4 address of one local interface, such as 127.0.0.1, not {raw!r}")
    return str(addr)


def parse_rate(raw: str) -> float:
    """Check the ``rate`` argument: MiB per second, 0 for no cap."""
    rate = float(raw)
    if not 0 <= rate < float("inf"):
        raise ValueError(f"expected MiB per second, 0 for no cap, got {raw!r}")
    return rate


def parse_ttl(raw: str) -> int:
    """Check the ``ttl`` argument: 0 (this host) to 255."""
    ttl = int(raw)
    if not 0 <= ttl <= 255:
        raise ValueError(f"expected a TTL from 0 (this host only) to 255, got {raw!r}")
    return ttl


def parse_url(url: str) -> tuple[str, int, dict[str, Any]]:
    """Return the group, the port and the arguments given in a ``udp://`` URL.

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
    converters = {"interface": parse_interface, "ttl": parse_ttl, "loopback": to_bool, "rate": parse_rate}
    return str(ipaddress.IPv4Address(host)), port, parse_query(url, converters)


# -- sockets -------------------------------------------------------------------------------------


def open_sockets(
    group: str, port: int, interface: str, ttl: int, loopback: bool
) -> tuple[socket.socket, socket.socket, int]:
    """Open the group socket and the node socket; return them and the receive buffer obtained.

    :raises OSError: if a socket cannot be opened, bound or joined to the group.
    """
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
        group_sock.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton(interface)
        group_sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        # The node socket sends everything; peers learn its address from the
        # source of our datagrams and unicast straight back to it.
        node_sock.bind((interface, 0))
        ip = socket.IPPROTO_IP
        node_sock.setsockopt(ip, socket.IP_MULTICAST_IF, mreq[4:])
        node_sock.setsockopt(ip, socket.IP_MULTICAST_TTL, ttl)
        node_sock.setsockopt(ip, socket.IP_MULTICAST_LOOP, int(loopback))
        # Direct unicasts reach no further than the multicast TTL would.
        node_sock.setsockopt(ip, socket.IP_TTL, max(ttl, 1))
        rcvbuf = min(_grow_rcvbuf(group_sock), _grow_rcvbuf(node_sock))
        group_sock.setblocking(False)
        node_sock.setblocking(False)
    except BaseException:
        group_sock.close()
        node_sock.close()
        raise
    return group_sock, node_sock, rcvbuf


def _grow_rcvbuf(sock: socket.socket) -> int:
    # SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    # Linux doubles the request, capped at rmem_max, and charges each datagram's
    # overhead against the result: that doubled figure is the real capacity.
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def warn_if_small(rcvbuf: int, logger: logging.Logger) -> None:
    """Warn, once per process, that the receive buffer obtained is under :data:`RCVBUF`."""
    global _warned_rcvbuf
    if rcvbuf < RCVBUF and not _warned_rcvbuf:
        _warned_rcvbuf = True
        logger.warning(
            "UDP receive buffer is %d bytes, not %d: bursts may be dropped; raise it with"
            " sysctl -w net.core.rmem_max=%d (or grant CAP_NET_ADMIN)",
            rcvbuf,
            2 * RCVBUF,
            RCVBUF,
        )


def kernel_drops(sock: socket.socket) -> int:
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
