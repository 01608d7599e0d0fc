"""Membership over broadcast: every node learns which nodes consume which addresses.

The protocol, on control frames (envelope kind ``ctl``, the operation in ``addr``):

* ``hello``  (broadcast at start, or unicast to one node whose state we lack):
  carries the sender's state; every receiver answers with its own ``state``.
* ``state``  (on change, broadcast; in answer to hello, unicast): the full map
  address -> handler count, with a sequence number; older ones are ignored.
* ``ping``   (broadcast every heartbeat): just the sequence number; a receiver
  that lacks that state asks for it with a unicast hello.
* ``bye``    (broadcast at stop): forget me now.

A node not heard from for ``misses`` heartbeats is dropped, and the requests
it owed fail at once.

Anybody who can write to the medium can send these frames, so what a remote
node can make this one hold or do is capped (the constants below, documented
in docs/security.md and docs/membership.md): a frame past a cap is dropped
whole, counted as ``dropped.<reason>`` and logged at most once per reason per
10 s. Nothing a remote node sends raises into a caller.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import TYPE_CHECKING, Any

from .._addresses import MAX_ADDRESS_LENGTH
from .._exceptions import ConfigError
from .._ids import now
from .._ratelog import RateLimitedLog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .routing import Router

logger = logging.getLogger("addrbus.membership")  # the name users configure; fixed when files move

#: Remote nodes this node keeps track of; a new one past this is not learnt (``dropped.too_many_nodes``).
MAX_NODES = 1_024
#: Addresses one node may announce (``dropped.too_many_addresses``).
MAX_ADDRESSES_PER_NODE = 10_000
#: Addresses held for all remote nodes together (``dropped.too_many_addresses``).
MAX_REMOTE_ADDRESSES = 100_000
#: Handlers one node may announce for one address (``dropped.too_many_handlers``); 0 means none.
MAX_HANDLERS_PER_ADDRESS = 1_024
#: The heartbeat interval, in seconds, a node may announce (``dropped.bad_heartbeat``) or be given.
HEARTBEAT_RANGE = (0.05, 60.0)
#: How far past the one held a node's sequence number may move in one frame (``dropped.seq_jump``).
MAX_SEQ_JUMP = 2**31
#: Answers (a ``state`` to a ``hello``, a ``hello`` to a ``ping``) sent per second, to every node together.
MAX_ANSWERS_PER_SECOND = 256
#: ... and how many may go out at once after a quiet spell (every node of a full table starting together).
ANSWER_BURST = MAX_NODES

_MAX_SEQ = 2**63 - 1
_NODE_ID = re.compile(r"[0-9a-f]{16}")  # what _ids.new_node_id() makes, and transports require
# What address_of() refuses (control characters), plus what UTF-8 cannot encode (lone surrogates).
_BAD_ADDRESS_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNENCODABLE = re.compile("[\ud800-\udfff]")  # the only str that UTF-8 refuses: lone surrogates
_OPERATIONS = frozenset({"hello", "state", "ping", "bye"})
LEFT = "it left the bus"  # why a node is gone after its bye


class _Refused(Exception):
    """A control frame past a cap: dropped whole, counted as ``dropped.<reason>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Peer:
    """What this node knows of one remote node."""

    __slots__ = ("answered", "asked", "hb", "heard", "owed", "pinged", "pinged_at", "seq")

    def __init__(self, hb: float) -> None:
        self.seq = -1  # of the state held; -1 until one arrives
        self.heard = now()
        self.hb = hb
        self.pinged: int | None = None  # the seq of its last ping, when it is not the one held
        self.answered = self.asked = self.pinged_at = -math.inf  # loop times: our answer, our hello, its ping
        self.owed: asyncio.TimerHandle | None = None  # a state answer due at the end of its window


def check_addresses(addrs: Any) -> dict[str, int]:
    """Return a received address map without its zero counts.

    :raises ValueError: for a map no bus sends (not an object, counts not integers or negative).
    :raises _Refused: past the caps on addresses and handlers, or an address ``address_of`` refuses.
    """
    if not isinstance(addrs, dict):
        raise ValueError("bad address map")
    if len(addrs) > MAX_ADDRESSES_PER_NODE:
        raise _Refused("too_many_addresses")
    if not addrs:
        return {}
    # map/min/max run in C: 10,000 addresses are checked in 4 ms (16 ms at 255 characters each).
    counts = addrs.values()
    if set(map(type, counts)) != {int} or min(counts) < 0:
        raise ValueError("bad address map")
    if max(counts) > MAX_HANDLERS_PER_ADDRESS:
        raise _Refused("too_many_handlers")
    keys = addrs.keys()
    if (min(map(len, keys)) == 0 or max(map(len, keys)) > MAX_ADDRESS_LENGTH or any(map(str.isspace, keys))
            or _BAD_ADDRESS_CHARS.search("".join(keys))):
        raise _Refused("bad_address")
    return {a: c for a, c in addrs.items() if c}


class Membership:
    """Keep the router's view of remote nodes current, within the caps above."""

    def __init__(
        self,
        router: Router,
        send_ctl: Callable[[str, dict[str, Any], str | None], Awaitable[int | bool | None]],
        on_node_gone: Callable[[str, str], None],
        *,
        heartbeat: float,
        misses: int = 3,
        startup_wait: float = 0.25,
        count: Callable[[str], None] | None = None,
    ) -> None:
        if not HEARTBEAT_RANGE[0] <= heartbeat <= HEARTBEAT_RANGE[1]:
            raise ConfigError(f"heartbeat must be between {HEARTBEAT_RANGE[0]} and {HEARTBEAT_RANGE[1]} seconds,"
                              f" the range other nodes accept; got {heartbeat}")
        self._router = router
        self._send = send_ctl
        self._on_node_gone = on_node_gone
        self._count = count or (lambda key: None)
        self._ratelog = RateLimitedLog(logger)
        self.heartbeat = heartbeat
        self.misses = misses
        self.startup_wait = startup_wait
        self._seq = 0
        self._peers: dict[str, _Peer] = {}
        self._announce_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._answers: asyncio.Event | None = None  # set while start() waits for the first states
        self._answered: set[str] = set()
        self._expected = 0
        self._tokens = float(ANSWER_BURST)
        self._refilled = -math.inf
        self._running = False

    def _state(self) -> dict[str, Any]:
        return {"seq": self._seq, "hb": self.heartbeat, "addrs": self._announced(self._router.local_counts())}

    def _announced(self, counts: dict[str, int]) -> dict[str, int]:
        """Return what peers will take of this node's addresses: one that cannot be encoded never hides the rest."""
        if _UNENCODABLE.search("".join(counts)):
            bad = [a for a in counts if _UNENCODABLE.search(a)]
            self._ratelog.warning("unencodable_address", "not announcing %d address(es) that UTF-8 cannot encode,"
                                  " e.g. %r; the others are announced", len(bad), bad[0])
            counts = {a: c for a, c in counts.items() if not _UNENCODABLE.search(a)}
        if len(counts) > MAX_ADDRESSES_PER_NODE:
            self._ratelog.warning("too_many_addresses_here", "this node consumes %d addresses; peers take at most"
                                  " %d, so only that many are announced", len(counts), MAX_ADDRESSES_PER_NODE)
            counts = dict(list(counts.items())[:MAX_ADDRESSES_PER_NODE])
        if counts and max(counts.values()) > MAX_HANDLERS_PER_ADDRESS:  # a weight only: the share of requests
            counts = {a: min(c, MAX_HANDLERS_PER_ADDRESS) for a, c in counts.items()}
        return counts

    async def start(self, use_heartbeat: bool) -> None:
        """Say hello and wait for the first exchange of state."""
        self._running = True
        self._seq += 1
        self._answers = asyncio.Event()
        self._answered = set()
        self._expected = 0
        try:
            expected = await self._send("hello", self._state(), None)
            if isinstance(expected, int) and not isinstance(expected, bool):
                # The transport knows how many nodes heard us: wait for each answer.
                self._expected = expected
                if len(self._answered) >= expected:
                    self._answers.set()
                if expected > 0:
                    try:
                        await asyncio.wait_for(self._answers.wait(), max(self.startup_wait, 2.0))
                    except TimeoutError:
                        logger.info("%d of %d nodes answered hello in time", len(self._answered), expected)
            else:
                # Nobody can say how many nodes are out there (UDP): wait a short window.
                self._expected = -1
                await asyncio.sleep(self.startup_wait)
        finally:
            self._answers = None  # later states are not answers to count
            self._answered = set()
        if use_heartbeat:
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        """Say goodbye and stop the heartbeat."""
        self._running = False
        if self._background:  # answers already due go out before the bye (a starting node waits for them)
            await asyncio.wait(set(self._background), timeout=1.0)
        tasks = [t for t in (self._heartbeat_task, self._announce_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._heartbeat_task = self._announce_task = None
        try:
            await asyncio.wait_for(self._send("bye", {"seq": self._seq}, None), 1.0)
        except Exception:
            logger.debug("could not say goodbye", exc_info=True)
        for peer in self._peers.values():
            if peer.owed is not None:
                peer.owed.cancel()
        self._peers.clear()
        self._router.clear_remote()

    def changed(self) -> None:
        """Announce the local state soon (coalescing bursts of changes)."""
        if not self._running:
            return
        self._seq += 1
        if self._announce_task is None or self._announce_task.done():
            self._announce_task = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        await asyncio.sleep(0)  # let a burst of registrations land first
        try:
            await self._send("state", self._state(), None)
        except Exception:
            logger.warning("could not announce this node's addresses; will retry on the next heartbeat",
                           exc_info=True)

    async def reannounce(self) -> None:
        """Say hello again (after the transport reconnected)."""
        self._seq += 1
        try:
            await self._send("hello", self._state(), None)
        except Exception:
            logger.warning("could not re-announce this node", exc_info=True)

    def on_ctl(self, op: str, node: str, body: Any) -> None:
        """Handle one control frame from ``node``.

        A frame past a cap is dropped and counted here.

        :raises ValueError: for a frame no bus sends (the caller counts ``dropped.bad_frame``).
        """
        if not isinstance(body, dict):
            raise ValueError("control body is not an object")
        seq = body.get("seq")
        if type(seq) is not int or not 0 <= seq <= _MAX_SEQ:
            raise ValueError("control body without seq")
        if op not in _OPERATIONS:
            raise ValueError("unknown control operation")
        try:
            self._on_ctl(op, node, body, seq)
        except _Refused as exc:
            self._count(f"dropped.{exc.reason}")
            self._ratelog.warning(exc.reason, "dropped a membership frame: %s", exc.reason)

    def _on_ctl(self, op: str, node: str, body: dict[str, Any], seq: int) -> None:
        if not isinstance(node, str) or _NODE_ID.fullmatch(node) is None:
            raise _Refused("bad_node_id")
        peer = self._peers.get(node)
        if op == "bye":
            if peer is not None or node in self._router.nodes:
                self._forget(node, LEFT)
            return
        hb = body.get("hb", self.heartbeat)
        if type(hb) not in (int, float) or not HEARTBEAT_RANGE[0] <= hb <= HEARTBEAT_RANGE[1]:
            raise _Refused("bad_heartbeat")
        if peer is None and len(self._peers) >= MAX_NODES:
            raise _Refused("too_many_nodes")
        if peer is not None and peer.seq >= 0 and seq > peer.seq + MAX_SEQ_JUMP:
            raise _Refused("seq_jump")
        if op == "ping":
            if peer is None:
                peer = self._peers[node] = _Peer(hb)
            t = asyncio.get_running_loop().time()
            fast, peer.pinged_at = t - peer.pinged_at < peer.hb / 2, t  # a real node pings once per its hb
            peer.heard, peer.hb = now(), float(hb)
            if seq != peer.seq:
                peer.pinged = seq
                self._ask_state(node, peer, t, fast)
            return
        counts = check_addresses(body.get("addrs"))
        # Newer than what we hold, or the one its own last ping names: a node's seq only grows, so a
        # higher one held (forged, or from before a confusion) gives way to what the node says now.
        if peer is None or seq >= peer.seq or seq == peer.pinged:
            held = self._router.remote_entries - len(self._router.nodes.get(node, ()))
            if held + len(counts) > MAX_REMOTE_ADDRESSES:
                raise _Refused("too_many_addresses")
            if peer is None:
                peer = self._peers[node] = _Peer(hb)
            peer.seq, peer.pinged = seq, None
            self._router.set_node(node, counts)
        peer.heard, peer.hb = now(), float(hb)
        if op == "hello":
            self._answer_hello(node, peer)
        elif self._answers is not None:
            self._answered.add(node)
            if 0 < self._expected <= len(self._answered):
                self._answers.set()

    # -- answers, capped per node and for all nodes together -------------------------------------

    def _take_answer(self) -> bool:
        """Take one of the answers allowed this second; False (and counted) when there is none left."""
        t = asyncio.get_running_loop().time()
        self._tokens = min(float(ANSWER_BURST), self._tokens + (t - self._refilled) * MAX_ANSWERS_PER_SECOND)
        self._refilled = t
        if self._tokens < 1:
            self._count("dropped.answer_rate")
            self._ratelog.warning("answer_rate", "not answering a membership frame: more than %d answers a second",
                                  MAX_ANSWERS_PER_SECOND)
            return False
        self._tokens -= 1
        return True

    def _answer_hello(self, node: str, peer: _Peer) -> None:
        """Answer with our state at once, or once at the end of this node's window (one heartbeat of ours)."""
        loop = asyncio.get_running_loop()
        wait = peer.answered + self.heartbeat - loop.time()
        if peer.owed is not None:  # a second hello in the window is ordinary (a ping crossed our answer)
            self._count("dropped.hello_flood")
            self._ratelog.warning("hello_flood", "a node says hello more than twice per heartbeat; answering once")
        elif wait <= 0:
            self._send_state(node, peer)
        else:
            peer.owed = loop.call_later(wait, self._owed_answer, node)

    def _owed_answer(self, node: str) -> None:
        peer = self._peers.get(node)
        if peer is not None and self._running:
            peer.owed = None
            self._send_state(node, peer)

    def _send_state(self, node: str, peer: _Peer) -> None:
        if self._take_answer():
            peer.answered = asyncio.get_running_loop().time()
            self._spawn(self._send_quietly("state", node))

    def _ask_state(self, node: str, peer: _Peer, t: float, fast: bool) -> None:
        """Ask ``node`` for its state (its ping names one we lack), at most twice per heartbeat of ours."""
        if t - peer.asked < self.heartbeat / 2:
            if fast:  # pings faster than the node's own interval: not a real node's
                self._count("dropped.ping_flood")
                self._ratelog.warning("ping_flood", "a node pings faster than its heartbeat; not asking each time")
            return
        if self._take_answer():
            peer.asked = t
            self._spawn(self._send_quietly("hello", node))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_quietly(self, op: str, node: str) -> None:
        try:
            await self._send(op, self._state(), node)
        except Exception:
            logger.debug("could not send %s to node %s", op, node, exc_info=True)

    def _forget(self, node: str, why: str) -> None:
        peer = self._peers.pop(node, None)
        if peer is not None and peer.owed is not None:
            peer.owed.cancel()
        if self._router.remove_node(node):
            logger.info("node %s is gone: %s", node, why)
        self._on_node_gone(node, why)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._send("ping", {"seq": self._seq, "hb": self.heartbeat}, None)
            except Exception:
                logger.debug("heartbeat not sent", exc_info=True)
            t = now()
            for node, peer in list(self._peers.items()):
                if t - peer.heard > peer.hb * self.misses:
                    self._forget(node, f"no heartbeat for {t - peer.heard:.1f} s")

    @property
    def nodes(self) -> dict[str, dict[str, int]]:
        """Return node -> address -> handler count for every live remote node."""
        return {node: dict(addrs) for node, addrs in self._router.nodes.items()}
