"""What every helper process of the test suite does: speak in lines, and stop when told.

The helpers run as scripts; the tests that start them pass their own
``sys.path`` as ``PYTHONPATH``, so ``tests.procs.lifecycle`` imports there too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any


def emit(*parts: Any) -> None:
    """Print one line for the test and flush it at once."""
    print(*parts, flush=True)


async def until_told_to_stop(lifetime: float) -> None:
    """Wait for SIGTERM/SIGINT, the end of stdin, or ``lifetime`` seconds."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin_closed() -> None:
        while await reader.read(4096):
            pass
        stop.set()

    watcher = loop.create_task(stdin_closed())
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        emit("lifetime-exceeded")
    finally:
        watcher.cancel()
