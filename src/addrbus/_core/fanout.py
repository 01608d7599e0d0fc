"""A publish that patterns or groups consume: the copies the engine cannot route.

The engine routes a publish by its exact address. A node that consumes only a
matching pattern gets its own copy, and so does the node of the one consumer
each group has for the publish (under its own id, since that node may hear the
publish itself for its other handlers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._patterns import GROUP_SEP
from .._wire.envelope import Envelope, make_envelope
from .handlers import Item, at

if TYPE_CHECKING:
    from .node import Node
    from .registration import Registration
    from .routing import Router


class Fanout:
    """Hand a publish to one consumer of each group, and say which copies other nodes need."""

    def __init__(self, node: Node, router: Router, full: Callable[[Registration, Item], None]) -> None:
        self._node = node
        self._router = router
        self._full = full

    def publish(self, addr: str, body: Any, hdrs: dict[str, str], msg_id: str,
                ts: float) -> tuple[Envelope | None, list[tuple[str, Envelope]] | None]:
        """Finish a publish when patterns or groups are consumed.

        Local handlers of the exact address and of ungrouped patterns have it
        already. Return the envelope for the engine (None if no other node
        consumes the exact address) and the copies to send, (node, envelope) each.
        """
        router = self._router
        node = self._node
        env = make_envelope(kind="pub", ns=node.namespace, addr=addr, id=msg_id, src=node.id, ts=ts, hdr=hdrs)
        # Nodes that consume only a matching pattern get their own copy: the engine
        # routes by exact address. A node with both hears the exact one.
        exact = router.remote.get(addr, {})
        copies = [(n, env) for n in sorted(router.pattern_nodes(addr)) if n not in exact]
        # One consumer of each group, across the bus: here, or a copy to its node,
        # under its own id (the node may hear the publish itself for other handlers).
        for i, group in enumerate(sorted(router.groups(addr))):
            target = router.pick_group(addr, group)
            if isinstance(target, str):
                copies.append((target, make_envelope(kind="pub", ns=node.namespace, addr=addr + GROUP_SEP + group,
                                                     id=f"{msg_id}~{i}", src=node.id, ts=ts, hdr=hdrs)))
            elif target is not None:
                one = at((body, False, hdrs, msg_id, None, None, node.id, ts, None), addr)
                if not target.deliver(one):
                    self._full(target, one)
        return (env if exact else None), (copies or None)
