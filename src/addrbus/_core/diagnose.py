"""What a failure should say: ``NoHandlers`` naming where the bus looked, and the names it knows close by."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import NoHandlers
from .._patterns import RESERVED, split_key

if TYPE_CHECKING:
    from .node import Node
    from .routing import Router

MAX_CANDIDATES = 10_000  # known addresses compared to a missing one (difflib is quadratic in their length only)


def no_handlers(router: Router, node: Node, where: Callable[[], str], address: str,
                to: str | None = None) -> NoHandlers:
    """Return the ``NoHandlers`` of a call to ``address``: the transport, the namespace, the nodes known, close names.

    One message for the five usual mistakes: a typo (close names), another
    namespace or URL or ``shared_key`` (no other node known, or none with it),
    the service not started yet.
    """
    others = len(router.nodes)
    place = f"on {where()}" + (f" in namespace {node.namespace!r}" if node.namespace else " (no namespace)")
    target = f"node {to} has no handlers" if to is not None else "no handlers"
    text = f"{target} for address {address!r} {place}; this bus knows "
    if others:
        text += f"{others} other node{'s' if others != 1 else ''}"
    else:
        text += ("no other node: is the service running, on the same URL and namespace, with the same"
                 " shared_key?")
    close = close_names(router, address)
    if close:
        text += "; did you mean " + " or ".join(repr(name) for name in close) + "?"
    return NoHandlers(text, code=-1)


def close_names(router: Router, address: str) -> list[str]:
    """Return up to three addresses consumed on the bus whose names are close to ``address``."""
    known = {split_key(key)[0] for key in (*router.local, *router.remote)}
    known = {name for name in known if not name.startswith(RESERVED) and name != address}
    if len(known) > MAX_CANDIDATES:
        known = set(sorted(known)[:MAX_CANDIDATES])
    return difflib.get_close_matches(address, sorted(known), n=3, cutoff=0.75)
