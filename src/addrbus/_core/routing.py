"""Who consumes what: local registrations, remote nodes, and round-robin picking."""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from .._patterns import GROUP_SEP, SYSTEM_PREFIX, TAP_PREFIX, is_pattern, matches, split_key

if TYPE_CHECKING:
    from .registration import Registration

MAX_MATCHES = 4096  # concrete addresses whose matching patterns are kept ready
MAX_PATTERNS = 1024  # distinct patterns matched; more from other nodes are not (a warning says so)

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

Target = Union["Registration", str]  # a local registration, or a remote node id
#: One address's consumers: each target once, where each one's turns end (cumulative weights), all turns.
Targets = tuple[list[Target], list[int], int]


class Router:
    """Pick one consumer for ``send``/``request`` across the whole bus.

    Round-robin, weighted by how many handlers each node has for the address
    (as Vert.x does): a node with three handlers is picked three times as often
    as a node with one. Local handlers count one each. The turns are not
    expanded into a list (a node may claim 1,024 handlers): each target is
    held once with the cumulative weight where its turns end.
    """

    def __init__(self) -> None:
        self.local: dict[str, list[Registration]] = {}
        self.remote: dict[str, dict[str, int]] = {}  # address -> node -> handler count
        self.nodes: dict[str, dict[str, int]] = {}  # node -> address -> handler count
        self.remote_entries = 0  # sum of len(self.nodes[node]): the (node, address) pairs held
        self._targets: dict[str, Targets] = {}
        self._turn: dict[str, int] = {}
        self._local_turn: dict[str, int] = {}
        #: Every pattern and every grouped key (``address + GROUP_SEP + group``) consumed here or on a
        #: known node: key -> (its address, that address's tokens if a pattern, its group).
        self.patterns: dict[str, tuple[str, tuple[str, ...] | None, str | None]] = {}
        self._matches: dict[str, tuple[str, ...]] = {}  # concrete address -> the patterns matching it
        self._patterns_full = False
        #: The taps' keys (``TAP_PREFIX + address or pattern``) consumed here or on a known node.
        self.taps: set[str] = set()
        self._changes: asyncio.Event | None = None  # set on the next change, for wait_for_count
        #: Called after every change of who consumes what.
        self.on_change: Callable[[], None] | None = None

    def _changed(self, address: str) -> None:
        self._targets.pop(address, None)
        self._track(address)
        self._wake()

    def _track(self, address: str) -> None:
        """Keep :attr:`patterns` and :attr:`taps` in step after ``address`` (a key) came or went, here or on a node."""
        if address.startswith(TAP_PREFIX):
            if address in self.local or address in self.remote:
                self.taps.add(address)
            else:
                self.taps.discard(address)
        if not (GROUP_SEP in address or is_pattern(address)):
            return
        self._targets.clear()  # the consumers of every address it matches changed
        held = address in self.local or address in self.remote
        if held == (address in self.patterns):
            return
        if held:
            if len(self.patterns) >= MAX_PATTERNS and address not in self.local:
                # Each new address is matched against every pattern: bound what other nodes may cost us.
                if not self._patterns_full:
                    self._patterns_full = True
                    logger.warning("more than %d patterns are consumed on the bus: the others' new ones are"
                                   " not matched here", MAX_PATTERNS)
                return
            base, group = split_key(address)
            self.patterns[address] = (base, tuple(base.split(".")) if is_pattern(base) else None, group)
        else:
            del self.patterns[address]
        self._matches.clear()
        self._targets.clear()

    def matching(self, address: str) -> tuple[str, ...]:
        """Return the keys (patterns and grouped keys, consumed anywhere) that the concrete ``address`` matches."""
        found = self._matches.get(address)
        if found is None:
            tokens = address.split(".")
            system = address.startswith(SYSTEM_PREFIX)  # the bus's own: for its exact consumer alone
            tap = address.startswith(TAP_PREFIX)  # a tap's copy: for taps' patterns alone
            found = tuple(key for key, (base, pattern, _) in self.patterns.items()
                          if (base == address if pattern is None else
                              not system and tap == base.startswith(TAP_PREFIX) and matches(pattern, tokens)))
            if len(self._matches) >= MAX_MATCHES:
                self._matches.clear()  # addresses come from the network too: keep it bounded
            self._matches[address] = found
        return found

    def local_for(self, address: str, grouped: bool = False) -> list[Registration]:
        """Return the local consumers of the concrete ``address``: exact ones, then matching patterns'.

        Grouped consumers only with ``grouped`` (a send or request may go to any consumer; a publish
        reaches one per group, chosen by :meth:`pick_group`).
        """
        regs = self.local.get(address, [])
        if not self.patterns:
            return regs
        found = self.matching(address)
        if not found:
            return regs
        patterns = self.patterns
        keys = [key for key in found if grouped or patterns[key][2] is None]
        return [*regs, *(reg for key in keys for reg in self.local.get(key, ()))]

    def pattern_nodes(self, address: str) -> set[str]:
        """Return the other nodes that consume an ungrouped pattern matching the concrete ``address``."""
        patterns = self.patterns
        return {node for key in self.matching(address) if patterns[key][2] is None for node in self.remote.get(key, ())}

    def groups(self, address: str) -> set[str]:
        """Return the groups that consume the concrete ``address`` (by it or by a pattern), anywhere."""
        patterns = self.patterns
        return {group for key in self.matching(address) if (group := patterns[key][2]) is not None}

    def pick_group(self, address: str, group: str) -> Target | None:
        """Return the next consumer of ``address`` in ``group`` across the bus, or None."""
        patterns = self.patterns
        keys = [key for key in self.matching(address) if patterns[key][2] == group]
        turn_key = address + GROUP_SEP + group
        entry = self._targets.get(turn_key)
        if entry is None:
            entry = self._build(turn_key, [reg for key in keys for reg in self.local.get(key, ())], keys)
        targets, ends, total = entry
        if total < 2:
            return targets[0] if targets else None
        # One turn counter per group, not per address: a pattern's addresses may each be published once.
        turn = self._turn.get(GROUP_SEP + group, 0)
        self._turn[GROUP_SEP + group] = turn + 1
        return targets[bisect_right(ends, turn % total)]

    def pick_local_group(self, address: str, group: str) -> Registration | None:
        """Return the next local consumer of ``address`` in ``group``, or None."""
        patterns = self.patterns
        regs = [reg for key in self.matching(address) if patterns[key][2] == group for reg in self.local.get(key, ())]
        if not regs:
            return None
        turn = self._local_turn.get(GROUP_SEP + group, 0)  # per group, as in pick_group
        self._local_turn[GROUP_SEP + group] = turn + 1
        return regs[turn % len(regs)]

    def _wake(self) -> None:
        if self.on_change is not None:
            self.on_change()
        event = self._changes
        if event is not None:
            self._changes = None
            event.set()

    def add_local(self, reg: Registration) -> None:
        """Add a local registration."""
        self.local.setdefault(reg.address, []).append(reg)
        self._changed(reg.address)

    def remove_local(self, reg: Registration) -> None:
        """Remove a local registration (no error if it is gone)."""
        regs = self.local.get(reg.address)
        if regs and reg in regs:
            regs.remove(reg)
            if not regs:
                del self.local[reg.address]
        self._changed(reg.address)

    def local_counts(self) -> dict[str, int]:
        """Return address -> number of local handlers."""
        return {address: len(regs) for address, regs in self.local.items()}

    def set_node(self, node: str, counts: dict[str, int]) -> None:
        """Replace what ``node`` consumes."""
        old = self.nodes.get(node, {})
        for address in old.keys() - counts.keys():
            by_node = self.remote.get(address)
            if by_node is not None:
                by_node.pop(node, None)
                if not by_node:
                    del self.remote[address]
        for address, count in counts.items():
            if count > 0:
                self.remote.setdefault(address, {})[node] = count
        new = self.nodes[node] = {a: c for a, c in counts.items() if c > 0}
        self.remote_entries += len(new) - len(old)
        targets = self._targets
        for address in old.keys() | counts.keys():
            targets.pop(address, None)
            self._track(address)
        self._wake()

    def update_node(self, node: str, added: dict[str, int], removed: list[str]) -> None:
        """Change what ``node`` consumes: set the counts of ``added``, drop ``removed``."""
        held = self.nodes.setdefault(node, {})
        before = len(held)
        remote = self.remote
        for address in removed:
            if held.pop(address, None) is not None:
                by_node = remote.get(address)
                if by_node is not None:
                    by_node.pop(node, None)
                    if not by_node:
                        del remote[address]
                self._targets.pop(address, None)
                self._track(address)
        for address, count in added.items():
            if count > 0:
                held[address] = count
                remote.setdefault(address, {})[node] = count
                self._targets.pop(address, None)
                self._track(address)
        self.remote_entries += len(held) - before
        self._wake()

    def remove_node(self, node: str) -> bool:
        """Forget ``node``; return whether it was known."""
        if node not in self.nodes:
            return False
        self.set_node(node, {})
        del self.nodes[node]
        return True

    def clear_remote(self) -> None:
        """Forget every remote node."""
        self.remote.clear()
        self.nodes.clear()
        self.remote_entries = 0
        self._targets.clear()
        self.patterns = {p: t for p, t in self.patterns.items() if p in self.local}
        self.taps = {t for t in self.taps if t in self.local}
        self._matches.clear()
        self._wake()

    @staticmethod
    def by_address(counts: dict[str, int]) -> dict[str, int]:
        """Return ``counts`` (key -> handlers) with each grouped key counted under its address."""
        if not any(GROUP_SEP in key for key in counts):
            return counts
        merged: dict[str, int] = {}
        for key, count in counts.items():
            address = split_key(key)[0]
            merged[address] = merged.get(address, 0) + count
        return merged

    def counts(self) -> dict[str, int]:
        """Return every consumed address (or pattern) with its handlers across the bus, groups' included."""
        counts: dict[str, int] = {}
        for key, regs in self.local.items():
            address = split_key(key)[0]
            counts[address] = counts.get(address, 0) + len(regs)
        for key, by_node in self.remote.items():
            address = split_key(key)[0]
            counts[address] = counts.get(address, 0) + sum(by_node.values())
        return counts

    def count(self, address: str) -> int:
        """Return how many handlers consume ``address`` across the bus (a concrete one's patterns included)."""
        found = len(self.local.get(address, ())) + sum(self.remote.get(address, {}).values())
        if self.patterns and not is_pattern(address):
            for pattern in self.matching(address):
                found += len(self.local.get(pattern, ())) + sum(self.remote.get(pattern, {}).values())
        return found

    def pick(self, address: str) -> Target | None:
        """Return the next consumer of ``address`` across the bus (grouped ones included), or None."""
        entry = self._targets.get(address)
        if entry is None:
            if self.patterns:
                entry = self._build(address, self.local_for(address, grouped=True), (address, *self.matching(address)))
            else:
                entry = self._build(address, self.local.get(address, []), (address,))
        targets, ends, total = entry
        if total < 2:
            return targets[0] if targets else None
        turn = self._turn.get(address, 0)
        self._turn[address] = turn + 1
        # The target whose turns include this one: as if each were listed as many times as its weight.
        return targets[bisect_right(ends, turn % total)]

    def _build(self, turn_key: str, local: list[Registration], keys: tuple[str, ...] | list[str]) -> Targets:
        """Cache and return the targets: the ``local`` registrations, then each node holding ``keys``, weighted."""
        targets: list[Target] = list(local)
        ends = list(range(1, len(targets) + 1))
        total = len(targets)
        by_node: dict[str, int] = {}
        for key in keys:
            for node, count in self.remote.get(key, {}).items():
                by_node[node] = by_node.get(node, 0) + count
        for node, count in sorted(by_node.items()):
            total += count
            targets.append(node)
            ends.append(total)
        entry = self._targets[turn_key] = (targets, ends, total)
        return entry

    def pick_local(self, address: str) -> Registration | None:
        """Return the next local consumer of ``address`` (exact, by a pattern, or in a group), or None."""
        regs = self.local_for(address, grouped=True) if self.patterns else self.local.get(address)
        if not regs:
            return None
        if len(self._local_turn) >= MAX_MATCHES and address not in self._local_turn:
            self._local_turn.clear()  # a pattern's addresses come from the network: keep it bounded
        turn = self._local_turn.get(address, 0)
        self._local_turn[address] = turn + 1
        return regs[turn % len(regs)]

    async def wait_for_count(self, address: str, count: int, exactly: bool, timeout: float) -> int:
        """Wait until ``count`` handlers (or more; with ``exactly``, just ``count``) consume ``address``.

        :raises TimeoutError: if that was not reached within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = self.count(address)
                    if found == count if exactly else found >= count:
                        return found
                    if self._changes is None:
                        self._changes = asyncio.Event()
                    await self._changes.wait()
        except TimeoutError:
            raise TimeoutError(f"waited {timeout:g} s for {'exactly' if exactly else 'at least'} {count} handler(s)"
                               f" of {address!r}: saw {self.count(address)}") from None
