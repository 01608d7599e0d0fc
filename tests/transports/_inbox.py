"""Helpers shared by the transport-level tests (raw frames, no bus)."""

from __future__ import annotations

import asyncio
from typing import Any

WAIT = 5.0  # seconds any one wait may take before the test fails


class Inbox:
    """Collect frames; let a test wait until it holds ``n`` of them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __call__(self, frame: Any) -> None:
        self.frames.append(frame)
        for n, future in self._waiters:
            if len(self.frames) >= n and not future.done():
                future.set_result(None)

    async def wait_for(self, n: int, limit: float = WAIT) -> list[bytes]:
        if len(self.frames) < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((n, future))
            await asyncio.wait_for(future, limit)
        return self.frames
