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
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._ids import now

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .routing import Router

logger = logging.getLogger("addrbus.membership")  # the name users configure; fixed when files move


class Membership:
    """Keep the router's view of remote nodes current."""

    def __init__(
        self,
        router: Router,
        send_ctl: Callable[[str, dict[str, Any], str | None], Awaitable[int | bool | None]],
        on_node_gone: Callable[[str, str], None],
        *,
        heartbeat: float,
        misses: int = 3,
        startup_wait: float = 0.25,
    ) -> None:
        self._router = router
        self._send = send_ctl
        self._on_node_gone = on_node_gone
        self.heartbeat = heartbeat
        self.misses = misses
        self.startup_wait = startup_wait
        self._seq = 0
        self._seen: dict[str, tuple[int, float, float]] = {}  # node -> (seq, last heard, its heartbeat)
        self._announce_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._answers: asyncio.Event | None = None
        self._answered: set[str] = set()
        self._expected = 0
        self._running = False

    def _state(self) -> dict[str, Any]:
        return {"seq": self._seq, "hb": self.heartbeat, "addrs": self._router.local_counts()}

    async def start(self, use_heartbeat: bool) -> None:
        """Say hello and wait for the first exchange of state."""
        self._running = True
        self._seq += 1
        self._answers = asyncio.Event()
        self._answered = set()
        self._expected = 0
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
        if use_heartbeat:
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        """Say goodbye and stop the heartbeat."""
        self._running = False
        for task in (self._heartbeat_task, self._announce_task):
            if task is not None:
                task.cancel()
        for task in (self._heartbeat_task, self._announce_task):
            if task is not None:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._heartbeat_task = self._announce_task = None
        try:
            await asyncio.wait_for(self._send("bye", {"seq": self._seq}, None), 1.0)
        except Exception:
            logger.debug("could not say goodbye", exc_info=True)
        self._seen.clear()
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
        """Handle one control frame from ``node``."""
        if not isinstance(body, dict):
            raise ValueError("control body is not an object")
        seq = body.get("seq")
        if not isinstance(seq, int):
            raise ValueError("control body without seq")
        if op == "bye":
            self._forget(node, "it left the bus")
            return
        hb = body.get("hb", self.heartbeat)
        if not isinstance(hb, (int, float)) or not 0 < hb <= 3600:
            raise ValueError("bad heartbeat interval")
        known = self._seen.get(node)
        if op in ("hello", "state"):
            addrs = body.get("addrs")
            if not isinstance(addrs, dict) or not all(
                isinstance(a, str) and type(c) is int for a, c in addrs.items()
            ):
                raise ValueError("bad address map")
            if known is None or seq >= known[0]:
                self._router.set_node(node, addrs)
                self._seen[node] = (seq, now(), float(hb))
            if op == "hello":
                self._reply_state(node)
            else:
                self._answered.add(node)
                if 0 < self._expected <= len(self._answered) and self._answers is not None:
                    self._answers.set()
        elif op == "ping":
            if known is None or known[0] != seq:
                self._seen[node] = (known[0] if known else -1, now(), float(hb))
                self._ask_state(node)
            else:
                self._seen[node] = (seq, now(), float(hb))
        else:
            raise ValueError("unknown control operation")

    def _reply_state(self, node: str) -> None:
        asyncio.get_running_loop().create_task(self._send_quietly("state", node))

    def _ask_state(self, node: str) -> None:
        asyncio.get_running_loop().create_task(self._send_quietly("hello", node))

    async def _send_quietly(self, op: str, node: str) -> None:
        try:
            await self._send(op, self._state(), node)
        except Exception:
            logger.debug("could not send %s to node %s", op, node, exc_info=True)

    def _forget(self, node: str, why: str) -> None:
        self._seen.pop(node, None)
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
            for node, (_, last, hb) in list(self._seen.items()):
                if t - last > hb * self.misses:
                    self._forget(node, f"no heartbeat for {t - last:.1f} s")

    @property
    def nodes(self) -> dict[str, dict[str, int]]:
        """Return node -> address -> handler count for every live remote node."""
        return {node: dict(addrs) for node, addrs in self._router.nodes.items()}
