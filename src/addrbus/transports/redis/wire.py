"""Channel names and the few RESP commands the redis transport writes by hand.

Every channel of a bus lives under ``addrbus:<len>:<namespace>:`` where ``<len>``
is the namespace's length in UTF-8 bytes. The length makes the prefix
unambiguous: namespace ``a`` with a name starting ``b.`` can never produce the
same channel as namespace ``a.b``, because ``addrbus:1:a:`` and ``addrbus:3:a.b:``
differ before the namespace does.

Per namespace and node:

* ``<prefix>b`` -- the broadcast channel; each frame starts with the 8-byte
  sender id, so a node drops its own broadcasts without a second subscription;
* ``<prefix>n:<node_id>`` -- the node's inbox, raw frames;
* ``<prefix>a:<interest key>`` -- the publishes of one address, led by the
  sender id like broadcasts, subscribed by its consumers (:mod:`.interest`);
* ``<prefix>h:<node_id>`` -- the node's heartbeat channel, which only the node
  itself publishes to and reads, so pings never meet ``on_frame``.
"""

from __future__ import annotations

import re

from ..._exceptions import ConfigError

_NODE_ID = re.compile(r"[0-9a-f]{16}")
CRLF = b"\r\n"
SENDER_LEN = 8


def check_node_id(node_id: str) -> bytes:
    """Return the 8 raw bytes of ``node_id`` (16 lowercase hex characters).

    :raises ConfigError: if ``node_id`` has another form.
    """
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise ConfigError(f"a node id is 16 lowercase hex characters, not {node_id!r}")
    return bytes.fromhex(node_id)


def channel_prefix(namespace: str) -> bytes:
    """Return the prefix of every channel of ``namespace``."""
    raw = namespace.encode()
    return b"addrbus:%d:%s:" % (len(raw), raw)


def broadcast_channel(prefix: bytes) -> bytes:
    """Return the namespace's broadcast channel."""
    return prefix + b"b"


def inbox_channel(prefix: bytes, node_id: str) -> bytes:
    """Return the inbox channel of ``node_id``."""
    return prefix + b"n:" + node_id.encode()


def heartbeat_channel(prefix: bytes, node_id: str) -> bytes:
    """Return the private heartbeat channel of ``node_id``."""
    return prefix + b"h:" + node_id.encode()


def publish_head(channel: bytes) -> bytes:
    """Return ``PUBLISH <channel>`` in RESP, ready for the payload's length and bytes."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(channel), channel)


def command(*args: bytes) -> bytes:
    """Pack one command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    parts.extend(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)
    return b"".join(parts)
