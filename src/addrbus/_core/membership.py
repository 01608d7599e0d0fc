"""Membership: every node learns which nodes consume which addresses, and which nodes are gone.

Protocol version 2 on control frames (kind ``ctl``, the operation in ``addr``): ``hello``,
``state`` (split into parts to fit a frame), ``delta``, ``ping``/``pong``, ``bye`` and ``gone``;
docs/membership.md describes each. Where the transport knows who listens (Redis) each node
pings its two successors in the ring of node ids, so traffic per node at rest does not grow
with the bus; elsewhere (UDP) every node pings everyone. What a remote node can make this
one hold or do is capped (:mod:`.peers`, :mod:`.answers`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from .._ids import now
from .._ratelog import RateLimitedLog
from . import peers
from .announce import Announcer, Interest
from .answers import Answers
from .peers import (
    HEARTBEAT_RANGE,
    MAX_NODES,
    MAX_REMOTE_ADDRESSES,
    MAX_SEQ,
    MAX_SEQ_JUMP,
    NODE_ID,
    PROTOCOL,
    RING,
    Assembly,
    Peer,
    Refused,
    check_addresses,
    check_part,
    check_removed,
    successors,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .routing import Router

logger = logging.getLogger("addrbus.membership")  # the name users configure; fixed when files move

_OPERATIONS = frozenset({"hello", "state", "delta", "ping", "pong", "bye", "gone"})
LEFT = "it left the bus"  # why a node is gone after its bye


class Membership:
    """Keep the router's view of remote nodes current, within the caps of :mod:`.peers`."""

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
        interest: Interest | None = None,
        budget: int | None = None,
        node_id: Callable[[], str] = lambda: "",
    ) -> None:
        if not HEARTBEAT_RANGE[0] <= heartbeat <= HEARTBEAT_RANGE[1]:
            raise ConfigError(f"heartbeat must be between {HEARTBEAT_RANGE[0]} and {HEARTBEAT_RANGE[1]} seconds,"
                              f" the range other nodes accept; got {heartbeat}")
        self._router = router
        self._send = send_ctl
        self._on_node_gone = on_node_gone
        self._count = count or (lambda key: None)
        self._ratelog = RateLimitedLog(logger)
        self._me = node_id
        self.heartbeat = heartbeat
        self.misses = misses
        self.startup_wait = startup_wait
        self._out = Announcer(router, send_ctl, interest, budget, heartbeat, self._ratelog)
        self._peers: dict[str, Peer] = {}
        self._answer = Answers(send_ctl, self._out, self._peers.get, heartbeat, self._count, self._ratelog)
        self._ring: list[str] | None = None  # sorted ids of the nodes whose state we hold, us included
        self._ring_mode = False
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._answers: asyncio.Event | None = None  # set while a hello waits for the first states
        self._answered: set[str] = set()
        self._expected = 0
        self._assembling = 0  # addresses held in every peer's assembly together
        self._refuted = -math.inf
        self._cut_off: float | None = None  # since when no ping could be sent (ring mode)
        self._running = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, use_heartbeat: bool, ring: bool = False) -> None:
        """Subscribe, say hello and wait for the first exchange of state."""
        self._running = self._answer.running = True
        self._ring_mode = ring
        await self._out.start()
        await self._greet()
        if use_heartbeat:
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat())

    async def _greet(self) -> None:
        """Broadcast hello and our state; wait for every node that heard it to answer (or a short window)."""
        self._answers = asyncio.Event()
        self._answered = set()
        self._expected = 0
        try:
            frames = self._out.state_bodies()
            expected = await self._send("hello", frames[0], None)
            for body in frames[1:]:
                await self._send("state", body, None)
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

    async def stop(self) -> None:
        """Say goodbye and stop the heartbeat."""
        self._running = self._answer.running = False
        background = self._answer.background
        if background:  # answers already due go out before the bye (a starting node waits for them)
            await asyncio.wait(set(background), timeout=1.0)
        tasks = [t for t in (self._heartbeat_task, *background) if t is not None]
        await self._out.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._heartbeat_task = None
        try:
            await asyncio.wait_for(self._send("bye", self._out.header(), None), 1.0)
        except Exception:
            logger.debug("could not say goodbye", exc_info=True)
        for peer in self._peers.values():
            if peer.owed is not None:
                peer.owed.cancel()
        self._peers.clear()
        self._ring = None
        self._assembling = 0
        self._router.clear_remote()

    def changed(self, address: str | None = None) -> None:
        """Announce the change of ``address`` soon (coalescing bursts of changes)."""
        if self._running:
            self._out.changed(address)

    async def reannounce(self) -> None:
        """After the transport reconnected: say hello again, and forget the nodes that did not answer."""
        for peer in self._peers.values():
            peer.fresh = False
        try:
            await self._greet()
        except Exception:
            logger.warning("could not re-announce this node", exc_info=True)
            return
        if self._expected >= 0:  # only where the transport knows who heard us
            for node in [n for n, p in self._peers.items() if not p.fresh]:
                self._forget(node, "it did not answer after this node reconnected")

    # -- receiving ------------------------------------------------------------------------------

    def on_ctl(self, op: str, node: str, body: Any) -> None:
        """Handle one control frame from ``node``.

        A frame past a cap, or of another protocol version, is dropped and counted here.

        :raises ValueError: for a frame no bus sends (the caller counts ``dropped.bad_frame``).
        """
        if not isinstance(body, dict):
            raise ValueError("control body is not an object")
        try:
            version = body.get("v", 1)
            if version != PROTOCOL:
                self._count("dropped.protocol_version")
                self._ratelog.warning(f"protocol_{version!r:.20}", "dropped a membership frame of protocol version"
                                      " %.20r from node %.16s: this node speaks version %d; run one version of"
                                      " addrbus on every node of a bus", version, node, PROTOCOL)
                return
            seq = body.get("seq")
            if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
                raise ValueError("control body without seq")
            if op not in _OPERATIONS:
                raise ValueError("unknown control operation")
            self._on_ctl(op, node, body, seq)
        except Refused as exc:
            self._count(f"dropped.{exc.reason}")
            self._ratelog.warning(exc.reason, "dropped a membership frame: %s", exc.reason)

    def _on_ctl(self, op: str, node: str, body: dict[str, Any], seq: int) -> None:
        if not isinstance(node, str) or NODE_ID.fullmatch(node) is None:
            raise Refused("bad_node_id")
        peer = self._peers.get(node)
        if op == "bye":
            if peer is not None or node in self._router.nodes:
                self._forget(node, LEFT)
            return
        if op == "gone":
            self._on_gone(node, body.get("node"))
            return
        hb = body.get("hb", self.heartbeat)
        if type(hb) not in (int, float) or not HEARTBEAT_RANGE[0] <= hb <= HEARTBEAT_RANGE[1]:
            raise Refused("bad_heartbeat")
        if peer is None and len(self._peers) >= MAX_NODES:
            raise Refused("too_many_nodes")
        if peer is not None and peer.seq >= 0 and seq > peer.seq + MAX_SEQ_JUMP:
            raise Refused("seq_jump")
        if peer is None:
            peer = self._peers[node] = Peer(float(hb))
        peer.heard, peer.hb, peer.fresh = now(), float(hb), True
        if op in ("ping", "pong"):
            self._on_ping(op, node, peer, seq)
        elif op == "delta":
            self._on_delta(node, peer, body, seq)
        elif op == "state" or "addrs" in body:
            self._on_state(op, node, peer, body, seq)
        if op == "hello":
            self._answer.hello(node, peer)

    def _on_ping(self, op: str, node: str, peer: Peer, seq: int) -> None:
        t = asyncio.get_running_loop().time()
        if op == "pong":
            peer.unanswered = 0
        else:
            fast, peer.pinged_at = t - peer.pinged_at < peer.hb / 2, t  # a real node pings once per its hb
            if self._ring_mode:
                self._answer.pong(node, peer, t)
        if seq != peer.seq:
            peer.pinged = seq
            self._answer.ask_state(node, peer, t, op == "ping" and fast)

    def _on_state(self, op: str, node: str, peer: Peer, body: dict[str, Any], seq: int) -> None:
        part, parts = check_part(body)
        counts = check_addresses(body.get("addrs"))
        # Newer than what we hold, or the one its own last ping names: a node's seq only grows, so a
        # higher one held (forged, or from before a confusion) gives way to what the node says now.
        if not (seq >= peer.seq or seq == peer.pinged):
            return
        if parts > 1:
            assembly = peer.assembly
            if assembly is None or assembly.seq != seq or assembly.total != parts:
                self._drop_assembly(peer)
                assembly = peer.assembly = Assembly(seq, parts)
            if self._assembling + len(counts) > MAX_REMOTE_ADDRESSES:
                raise Refused("too_many_addresses")
            self._assembling += assembly.add(part, counts)
            if not assembly.complete:
                return
            counts = assembly.counts
            self._drop_assembly(peer)
        held = self._router.remote_entries - len(self._router.nodes.get(node, ()))
        if held + len(counts) > MAX_REMOTE_ADDRESSES:
            raise Refused("too_many_addresses")
        joined = node not in self._router.nodes
        peer.seq, peer.pinged = seq, None
        self._router.set_node(node, counts)
        if joined:
            self._ring = None
        if op == "state" and self._answers is not None:
            self._answered.add(node)
            if 0 < self._expected <= len(self._answered):
                self._answers.set()

    def _drop_assembly(self, peer: Peer) -> None:
        if peer.assembly is not None:
            self._assembling -= len(peer.assembly.counts)
            peer.assembly = None

    def _on_delta(self, node: str, peer: Peer, body: dict[str, Any], seq: int) -> None:
        base = body.get("base")
        if type(base) is not int:
            raise ValueError("delta without base")
        added = check_addresses(body.get("add", {}))
        removed = check_removed(body.get("del", []))
        if seq <= peer.seq:
            return  # older than the state held: already in it
        if peer.seq < 0 or base != peer.seq:
            peer.pinged = seq  # a gap: the full state is what we need
            self._answer.ask_state(node, peer, asyncio.get_running_loop().time(), False)
            return
        held = self._router.nodes.get(node, {})
        grows = sum(1 for a in added if a not in held) - sum(1 for a in removed if a in held)
        if len(held) + grows > peers.MAX_ADDRESSES_PER_NODE:
            raise Refused("too_many_addresses")
        if self._router.remote_entries + grows > MAX_REMOTE_ADDRESSES:
            raise Refused("too_many_addresses")
        peer.seq = seq
        self._router.update_node(node, added, removed)

    def _on_gone(self, node: str, gone: Any) -> None:
        if not isinstance(gone, str) or NODE_ID.fullmatch(gone) is None:
            raise Refused("bad_node_id")
        if gone == self._me():
            # Somebody thinks we are gone (we were paused, or a forger says so): say hello again.
            t = asyncio.get_running_loop().time()
            if self._running and t - self._refuted >= self.heartbeat:
                self._refuted = t
                self._answer.spawn(self._greet())
        elif gone in self._peers or gone in self._router.nodes:
            self._forget(gone, f"node {node} saw it go")

    # -- liveness -------------------------------------------------------------------------------

    def _forget(self, node: str, why: str) -> None:
        peer = self._peers.pop(node, None)
        if peer is not None:
            if peer.owed is not None:
                peer.owed.cancel()
            self._drop_assembly(peer)
        if self._router.remove_node(node):
            self._ring = None
            logger.info("node %s is gone: %s", node, why)
        self._on_node_gone(node, why)

    def _successors(self) -> list[str]:
        """Return the nodes this one watches: the next ones after it in the ring of node ids."""
        if self._ring is None:
            self._ring = sorted({*self._router.nodes, self._me()})
        return successors(self._ring, self._me(), RING)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            if self._ring_mode:
                await self._watch_ring()
            else:
                try:
                    await self._send("ping", self._out.header(), None)
                except Exception:
                    logger.debug("heartbeat not sent", exc_info=True)
            await self._out.repair()
            t = now()
            for node, peer in list(self._peers.items()):
                # In ring mode only a node with no state yet expires by silence; the ring watches the rest.
                if (not self._ring_mode or peer.seq < 0) and t - peer.heard > peer.hb * self.misses:
                    self._forget(node, f"no heartbeat for {t - peer.heard:.1f} s")

    async def _watch_ring(self) -> None:
        """Ping our successors; one that nobody listens for, or that left three pings unanswered, is gone.

        While no ping can be sent (the transport is down), this node hears from nobody: after as
        many heartbeats as a silent node is given, it forgets every node.
        """
        for node in self._successors():
            peer = self._peers.get(node)
            if peer is None:
                continue
            try:
                heard = await self._send("ping", self._out.header(), node)
            except Exception:
                logger.debug("ping to node %s not sent", node, exc_info=True)
                self._lost_contact()
                return
            self._cut_off = None
            if heard is False:
                await self._declare_gone(node, "its inbox has no listener")
                continue
            peer.unanswered += 1
            silent = now() - peer.heard
            if peer.unanswered > self.misses and silent > peer.hb * self.misses:
                await self._declare_gone(node, f"no answer to {peer.unanswered - 1} pings in {silent:.1f} s")

    def _lost_contact(self) -> None:
        t = now()
        if self._cut_off is None:
            self._cut_off = t
        elif t - self._cut_off > self.heartbeat * self.misses:
            for node in list(self._peers):
                self._forget(node, f"this node could not reach the bus for {t - self._cut_off:.1f} s")

    async def _declare_gone(self, node: str, why: str) -> None:
        self._forget(node, why)
        try:
            await self._send("gone", {**self._out.header(), "node": node}, None)
        except Exception:
            logger.debug("could not tell the bus that node %s is gone", node, exc_info=True)

    @property
    def nodes(self) -> dict[str, dict[str, int]]:
        """Return node -> address -> handler count for every live remote node."""
        return {node: dict(addrs) for node, addrs in self._router.nodes.items()}
