"""Run plain functions in worker threads: the only module that imports anyio."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

T = TypeVar("T")


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread and return its result."""
    return await anyio.to_thread.run_sync(fn, *args)
