"""Node ids, message ids and the clock that stamps messages."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable


def new_node_id() -> str:
    """Return a random node id: 16 lowercase hex characters."""
    return secrets.token_hex(8)


def id_source(node_id: str) -> Callable[[], str]:
    """Return a function making ids unique across the bus: the node id plus a counter.

    A counter is ~20x cheaper than ``uuid4()`` and, prefixed by a random node
    id, just as unique within a bus. The chain of ``map`` objects runs in C:
    no Python frame per id.
    """
    hexes = map(format, itertools.count(1), itertools.repeat("x"))
    return map((node_id + "-").__add__, hexes).__next__


# Wall-clock seconds: deadlines travel between machines.
now = time.time
