"""Run a blocking function in a worker thread: the one module of addrbus that imports anyio."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio.to_thread

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def run_in_thread(fn: Callable[[*Ts], T], *args: *Ts, abandon_on_cancel: bool = False) -> T:
    """Call ``fn(*args)`` in a worker thread and return its result.

    Args:
        fn: a blocking (sync) callable.
        args: its positional arguments.
        abandon_on_cancel: when the awaiting task is cancelled, stop waiting
            for the thread (which cannot be interrupted) instead of finishing
            the call first.
    """
    return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=abandon_on_cancel)
