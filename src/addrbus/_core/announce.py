"""The sending half of membership: what this node announces of itself, as full states and as deltas.

Peers hold what was announced (``held``) at the sequence number ``seq``. A
change of a local address marks it dirty; soon after (bursts coalesce), the
dirty addresses are compared with ``held`` and the difference goes out as
deltas, each within the transport's frame. Addresses a node starts consuming
are subscribed at the transport *before* peers hear of them, and those it
stops consuming are unsubscribed *after*, so no publish routed by the new
state is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from .._patterns import SYSTEM_PREFIX
from .peers import MAX_ADDRESSES_PER_NODE, MAX_HANDLERS_PER_ADDRESS, PROTOCOL, split, split_delta

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._ratelog import RateLimitedLog
    from .routing import Router

logger = logging.getLogger("addrbus.membership")  # the name users configure; fixed when files move

_UNENCODABLE = re.compile("[\ud800-\udfff]")  # the only str that UTF-8 refuses: lone surrogates


class Interest(Protocol):
    """Where the transport learns which addresses' publishes this node wants (the bus's Wire)."""

    async def subscribe(self, addresses: Any) -> None: ...
    async def unsubscribe(self, addresses: Any) -> None: ...


class Announcer:
    """Announce this node's addresses: the full state on request, deltas on change."""

    def __init__(self, router: Router, send_ctl: Callable[[str, dict[str, Any], str | None], Awaitable[Any]],
                 interest: Interest | None, budget: int | None, heartbeat: float, ratelog: RateLimitedLog) -> None:
        self._router = router
        self._send = send_ctl
        self._interest = interest
        self._budget = budget
        self._hb = heartbeat
        self._ratelog = ratelog
        self.seq = 0
        self.held: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._all_dirty = False
        self._task: asyncio.Task[None] | None = None
        self._stale = False  # a delta could not be sent: send the full state at the next heartbeat

    def header(self) -> dict[str, Any]:
        """Return what every frame of ours carries: version, state number, heartbeat."""
        return {"v": PROTOCOL, "seq": self.seq, "hb": self._hb}

    def state_bodies(self) -> list[dict[str, Any]]:
        """Return the full state as frames' bodies: one, or several parts of one state."""
        parts = split(self.held, self._budget)
        return [{**self.header(), "part": i, "parts": len(parts), "addrs": part} for i, part in enumerate(parts)]

    async def start(self) -> None:
        """Take the local addresses as the state to announce, and subscribe to them."""
        self.seq += 1
        self._dirty.clear()
        self._all_dirty = False
        self.held = {}
        self.held = self._announced(self._router.local_counts())
        self._stale = False
        if self._interest is not None:
            await self._interest.subscribe(list(self.held))

    async def stop(self) -> None:
        """Stop announcing (a change still being announced is abandoned)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    def changed(self, address: str | None) -> None:
        """Mark ``address`` (None: every address) to be announced soon."""
        if address is None:
            self._all_dirty = True
        else:
            self._dirty.add(address)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        await asyncio.sleep(0)  # let a burst of registrations land first
        while self._dirty or self._all_dirty:
            try:
                await self._send_changes()
            except Exception:
                self._stale = self._all_dirty = True  # nothing is lost: the next heartbeat compares again
                logger.warning("could not announce this node's addresses; will send them whole on the next"
                               " heartbeat", exc_info=True)
                return

    async def _send_changes(self) -> None:
        router = self._router
        if self._all_dirty:
            dirty: set[str] = set(self.held) | set(router.local)
        else:
            dirty = self._dirty
        self._dirty, self._all_dirty = set(), False
        local = router.local
        wanted = self._announced({a: len(local[a]) for a in dirty if a in local})
        held = self.held
        added = {a: c for a, c in wanted.items() if held.get(a) != c}
        removed = [a for a in dirty if a in held and a not in wanted]
        room = MAX_ADDRESSES_PER_NODE - len(held) + len(removed)
        new = [a for a in added if a not in held]
        if len(new) > room:
            self._ratelog.warning("too_many_addresses_here", "this node consumes more than %d addresses; peers"
                                  " take at most that many, so the rest are not announced", MAX_ADDRESSES_PER_NODE)
            for a in new[room:]:
                del added[a]
            new = new[:room]
        if not added and not removed:
            return
        if new and self._interest is not None:
            await self._interest.subscribe(new)
        bodies = []
        for add, gone in split_delta(added, removed, self._budget):
            held.update(add)
            for a in gone:
                held.pop(a, None)
            self.seq += 1
            bodies.append({**self.header(), "base": self.seq - 1, "add": add, "del": gone})
        for body in bodies:
            await self._send("delta", body, None)
        if removed and self._interest is not None:
            await self._interest.unsubscribe([a for a in removed if a not in held])

    async def repair(self) -> None:
        """Send changes not yet announced, then the full state, if a delta could not be sent (at each heartbeat)."""
        if not self._stale:
            return
        self._stale = False
        try:
            if self._dirty or self._all_dirty:
                await self._send_changes()
            for body in self.state_bodies():
                await self._send("state", body, None)
        except Exception:
            self._stale = self._all_dirty = True
            logger.debug("full state not sent; trying again on the next heartbeat", exc_info=True)

    def _announced(self, counts: dict[str, int]) -> dict[str, int]:
        """Return what peers will take of these addresses: one that cannot be encoded never hides the rest.

        The bus's own addresses are never announced: every node consumes them.
        """
        if any(a.startswith(SYSTEM_PREFIX) for a in counts):
            counts = {a: c for a, c in counts.items() if not a.startswith(SYSTEM_PREFIX)}
        if _UNENCODABLE.search("".join(counts)):
            bad = [a for a in counts if _UNENCODABLE.search(a)]
            self._ratelog.warning("unencodable_address", "not announcing %d address(es) that UTF-8 cannot encode,"
                                  " e.g. %r; the others are announced", len(bad), bad[0])
            counts = {a: c for a, c in counts.items() if not _UNENCODABLE.search(a)}
        if len(counts) > MAX_ADDRESSES_PER_NODE and not self.held:
            self._ratelog.warning("too_many_addresses_here", "this node consumes %d addresses; peers take at most"
                                  " %d, so only that many are announced", len(counts), MAX_ADDRESSES_PER_NODE)
            counts = dict(list(counts.items())[:MAX_ADDRESSES_PER_NODE])
        if counts and max(counts.values()) > MAX_HANDLERS_PER_ADDRESS:  # a weight only: the share of requests
            counts = {a: min(c, MAX_HANDLERS_PER_ADDRESS) for a, c in counts.items()}
        return counts
