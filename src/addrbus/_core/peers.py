"""What a node holds of its peers, and the caps on it: the data of the membership protocol, checked.

Anybody who can write to the medium can send membership frames, so what a
remote node can make this one hold is capped (the constants below, documented
in docs/security.md and docs/membership.md). A frame past a cap raises
:class:`Refused`; the membership drops it whole and counts it.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from .._addresses import MAX_ADDRESS_LENGTH
from .._ids import now

#: The membership protocol this node speaks; a frame of another is dropped (``dropped.protocol_version``).
PROTOCOL = 2
#: Remote nodes this node keeps track of; a new one past this is not learnt (``dropped.too_many_nodes``).
MAX_NODES = 1_024
#: Addresses one node may announce (``dropped.too_many_addresses``).
MAX_ADDRESSES_PER_NODE = 10_000
#: Addresses held for all remote nodes together, and again for states still arriving in parts
#: (``dropped.too_many_addresses``).
MAX_REMOTE_ADDRESSES = 100_000
#: Handlers one node may announce for one address (``dropped.too_many_handlers``); 0 means none.
MAX_HANDLERS_PER_ADDRESS = 1_024
#: Frames one node's full state may be split into (``dropped.too_many_parts``).
MAX_PARTS = 1_024
#: The heartbeat interval, in seconds, a node may announce (``dropped.bad_heartbeat``) or be given.
HEARTBEAT_RANGE = (0.05, 60.0)
#: How far past the one held a node's sequence number may move in one frame (``dropped.seq_jump``).
MAX_SEQ_JUMP = 2**31
#: Answers (a ``state`` to a ``hello``, a ``hello`` to a ``ping``) sent per second, to every node together.
MAX_ANSWERS_PER_SECOND = 256
#: ... and how many may go out at once after a quiet spell (every node of a full table starting together).
ANSWER_BURST = MAX_NODES

MAX_SEQ = 2**63 - 1
NODE_ID = re.compile(r"[0-9a-f]{16}")  # what _ids.new_node_id() makes, and transports require
# What address_of() refuses (control characters), plus what UTF-8 cannot encode (lone surrogates).
_BAD_ADDRESS_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# JSON-escaped in a frame: each one costs a byte more than its UTF-8 form.
_ESCAPED = re.compile(r'["\\]')


class Refused(Exception):
    """A control frame past a cap: dropped whole, counted as ``dropped.<reason>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Assembly:
    """The parts of one peer's full state at one sequence number, gathered until every part has come."""

    __slots__ = ("counts", "got", "seq", "total")

    def __init__(self, seq: int, total: int) -> None:
        self.seq = seq
        self.total = total
        self.got: set[int] = set()
        self.counts: dict[str, int] = {}

    def add(self, part: int, counts: dict[str, int]) -> int:
        """Take one part; return how many addresses it added (0 for a part already held).

        :raises Refused: when the parts together announce more addresses than one node may.
        """
        if part in self.got:
            return 0
        if len(self.counts) + len(counts) > MAX_ADDRESSES_PER_NODE:
            raise Refused("too_many_addresses")
        self.got.add(part)
        before = len(self.counts)
        self.counts.update(counts)
        return len(self.counts) - before

    @property
    def complete(self) -> bool:
        """Tell whether every part has come."""
        return len(self.got) == self.total


class Peer:
    """What this node knows of one remote node."""

    __slots__ = ("answered", "asked", "assembly", "fresh", "hb", "heard", "owed", "pinged", "pinged_at", "ponged_at",
                 "seq", "unanswered")

    def __init__(self, hb: float) -> None:
        self.seq = -1  # of the state held; -1 until one arrives
        self.heard = now()
        self.hb = hb
        self.pinged: int | None = None  # the seq of its last ping, when it is not the one held
        # Loop times: our answer, our hello, its ping, our pong.
        self.answered = self.asked = self.pinged_at = self.ponged_at = -math.inf
        self.owed: asyncio.TimerHandle | None = None  # a state answer due at the end of its window
        self.assembly: Assembly | None = None  # its full state, while it arrives in parts
        self.unanswered = 0  # our pings since its last answer (ring mode)
        self.fresh = True  # heard since our last hello (False while a reconnected node re-learns the bus)


def check_addresses(addrs: Any) -> dict[str, int]:
    """Return a received address map without its zero counts.

    :raises ValueError: for a map no bus sends (not an object, counts not integers or negative).
    :raises Refused: past the caps on addresses and handlers, or an address ``address_of`` refuses.
    """
    if not isinstance(addrs, dict):
        raise ValueError("bad address map")
    if len(addrs) > MAX_ADDRESSES_PER_NODE:
        raise Refused("too_many_addresses")
    if not addrs:
        return {}
    # map/min/max run in C: 10,000 addresses are checked in 4 ms (16 ms at 255 characters each).
    counts = addrs.values()
    if set(map(type, counts)) != {int} or min(counts) < 0:
        raise ValueError("bad address map")
    if max(counts) > MAX_HANDLERS_PER_ADDRESS:
        raise Refused("too_many_handlers")
    check_names(addrs.keys())
    return {a: c for a, c in addrs.items() if c}


def check_removed(removed: Any) -> list[str]:
    """Return the addresses a delta removes.

    :raises ValueError: for a list no bus sends.
    :raises Refused: past the cap on addresses, or an address ``address_of`` refuses.
    """
    if not isinstance(removed, list):
        raise ValueError("bad address list")
    if len(removed) > MAX_ADDRESSES_PER_NODE:
        raise Refused("too_many_addresses")
    if removed:
        if set(map(type, removed)) != {str}:
            raise ValueError("bad address list")
        check_names(removed)
    return removed


def check_names(names: Any) -> None:
    """Refuse a collection of addresses if one of them is an address no bus sends.

    :raises Refused: ``bad_address``.
    """
    if (min(map(len, names)) == 0 or max(map(len, names)) > MAX_ADDRESS_LENGTH or any(map(str.isspace, names))
            or _BAD_ADDRESS_CHARS.search("".join(names))):
        raise Refused("bad_address")


def check_part(body: dict[str, Any]) -> tuple[int, int]:
    """Return (part, parts) of a state frame: part 0 of 1 when it is whole.

    :raises ValueError: for numbers no bus sends.
    :raises Refused: ``too_many_parts``.
    """
    part, parts = body.get("part", 0), body.get("parts", 1)
    if type(part) is not int or type(parts) is not int or not 0 <= part < parts:
        raise ValueError("bad state part")
    if parts > MAX_PARTS:
        raise Refused("too_many_parts")
    return part, parts


def _size(address: str, count: int) -> int:
    """Return (a bound on) the bytes ``"address":count,`` takes in a JSON frame."""
    return len(address.encode("utf-8", "surrogatepass")) + len(_ESCAPED.findall(address)) + len(str(count)) + 4


def split(counts: dict[str, int], budget: int | None) -> list[dict[str, int]]:
    """Split an address map into maps of at most ``budget`` bytes of JSON each (None: one map)."""
    if budget is None or sum(_size(a, c) for a, c in counts.items()) <= budget:
        return [counts]
    parts: list[dict[str, int]] = [{}]
    used = 0
    for address, count in counts.items():
        size = _size(address, count)
        if used + size > budget and parts[-1]:
            parts.append({})
            used = 0
        parts[-1][address] = count
        used += size
    return parts


def split_delta(added: dict[str, int], removed: list[str],
                budget: int | None) -> list[tuple[dict[str, int], list[str]]]:
    """Split a change into changes of at most ``budget`` bytes of JSON each (None: one change)."""
    if budget is None:
        return [(added, removed)]
    changes: list[tuple[dict[str, int], list[str]]] = [(part, []) for part in split(added, budget) if part]
    chunk: list[str] = []
    used = 0
    for address in removed:
        size = _size(address, 0)
        if used + size > budget and chunk:
            changes.append(({}, chunk))
            chunk, used = [], 0
        chunk.append(address)
        used += size
    if chunk or not changes:
        changes.append(({}, chunk))
    return changes


RING = 2  # successors each node watches where the transport knows who listens


def successors(ring: list[str], me: str, k: int = RING) -> list[str]:
    """Return the ``k`` node ids after ``me`` in the sorted ``ring`` (fewer in a small ring)."""
    if len(ring) < 2:
        return []
    i = ring.index(me) if me in ring else 0
    return [ring[(i + j) % len(ring)] for j in range(1, min(k, len(ring) - 1) + 1)]
