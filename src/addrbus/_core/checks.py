"""The checks every call into the bus makes: its loop, its address, its node id, its timeout."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from .._addresses import address_of, remember
from .._exceptions import BusError
from .._patterns import check_concrete

if TYPE_CHECKING:
    from .node import Node

NOT_RUNNING = "the bus is not running: use 'async with bus:' or 'await bus.start()' first"
_OTHER_LOOP = (
    "this bus runs on another event loop (or thread): call it from a coroutine on the bus's own event loop, e.g."
    " asyncio.run_coroutine_threadsafe(bus.publish(...), bus_loop) from another thread"
)
_ENDED_LOOP = (
    "this bus was started on another event loop, which has ended (an earlier asyncio.run()?): stop it there,"
    " before that loop ends (e.g. 'async with bus:'), or create a new EventBus for this loop"
)

#: The longest request timeout, in seconds (about 11.6 days); longer ones, and infinity, are refused.
MAX_TIMEOUT = 1_000_000
_NODE_ID = re.compile(r"[0-9a-f]{16}")


SENDABLE: dict[Any, str] = {}  # address (str, Enum, Endpoint) -> its checked, concrete str


def sendable(address: Any) -> str:
    """Return ``address`` as a checked ``str`` a message may go to (no pattern); cached.

    :raises ValueError: for a bad address or a pattern. :raises TypeError: for a non-address.
    """
    return remember(SENDABLE, address, check_concrete(address_of(address)))


def check_node(node: Any) -> str:
    """Return ``node`` if it is a node id (as ``bus.node_id``); raise ValueError if not."""
    if type(node) is not str or _NODE_ID.fullmatch(node) is None:
        raise ValueError(f"node must be a node id (16 lowercase hex characters, as bus.node_id), not {node!r}")
    return node


def check_loop(node: Node) -> None:
    """Refuse a call made outside the bus's event loop (another thread's loop, a later loop, or no loop at all).

    :raises BusError: saying what to do instead: for a loop that has ended, stop the bus
        in its loop or make a new one; for another thread, ``asyncio.run_coroutine_threadsafe``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not node.loop:
        ended = node.loop is not None and node.loop.is_closed()
        raise BusError(_ENDED_LOOP if ended else _OTHER_LOOP)
