"""Membership's answers to other nodes, capped per node and for all nodes together.

A ``state`` answers a ``hello``, a ``hello`` asks a node whose state we lack,
a ``pong`` answers a ring ping. Anybody can send the frames that draw these
answers, so each node is answered at most once per heartbeat of ours, and all
nodes together at most :data:`~.peers.MAX_ANSWERS_PER_SECOND` times a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from .peers import ANSWER_BURST, MAX_ANSWERS_PER_SECOND

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from .._ratelog import RateLimitedLog
    from .announce import Announcer
    from .peers import Peer

logger = logging.getLogger("addrbus.membership")  # the name users configure; fixed when files move


class Answers:
    """Send membership's answers in the background, within the caps."""

    def __init__(self, send_ctl: Callable[[str, dict[str, Any], str | None], Awaitable[Any]], out: Announcer,
                 peer: Callable[[str], Peer | None], heartbeat: float, count: Callable[[str], None],
                 ratelog: RateLimitedLog) -> None:
        self._send = send_ctl
        self._out = out
        self._peer = peer
        self._hb = heartbeat
        self._count = count
        self._ratelog = ratelog
        self.background: set[asyncio.Task[None]] = set()
        self._tokens = float(ANSWER_BURST)
        self._refilled = -math.inf
        self.running = False

    def _take(self) -> bool:
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

    def hello(self, node: str, peer: Peer) -> None:
        """Answer with our state at once, or once at the end of this node's window (one heartbeat of ours)."""
        loop = asyncio.get_running_loop()
        wait = peer.answered + self._hb - loop.time()
        if peer.owed is not None:  # a second hello in the window is ordinary (a ping crossed our answer)
            self._count("dropped.hello_flood")
            self._ratelog.warning("hello_flood", "a node says hello more than twice per heartbeat; answering once")
        elif wait <= 0:
            self._send_state(node, peer)
        else:
            peer.owed = loop.call_later(wait, self._owed, node)

    def _owed(self, node: str) -> None:
        peer = self._peer(node)
        if peer is not None and self.running:
            peer.owed = None
            self._send_state(node, peer)

    def _send_state(self, node: str, peer: Peer) -> None:
        if self._take():
            peer.answered = asyncio.get_running_loop().time()
            self.spawn(self._send_quietly("state", node))

    def ask_state(self, node: str, peer: Peer, t: float, fast: bool) -> None:
        """Ask ``node`` for its state (it names one we lack), at most twice per heartbeat of ours."""
        if t - peer.asked < self._hb / 2:
            if fast:  # pings faster than the node's own interval: not a real node's
                self._count("dropped.ping_flood")
                self._ratelog.warning("ping_flood", "a node pings faster than its heartbeat; not asking each time")
            return
        if self._take():
            peer.asked = t
            self.spawn(self._send_quietly("hello", node))

    def pong(self, node: str, peer: Peer, t: float) -> None:
        """Answer a ring ping, at most twice per heartbeat of ours."""
        if t - peer.ponged_at >= self._hb / 2:
            peer.ponged_at = t
            self.spawn(self._send_quietly("pong", node))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _send_quietly(self, op: str, node: str) -> None:
        try:
            if op == "state":
                for body in self._out.state_bodies():
                    await self._send("state", body, node)
            else:
                await self._send(op, self._out.header(), node)
        except Exception:
            logger.debug("could not send %s to node %s", op, node, exc_info=True)
