"""Stop on SIGINT and SIGTERM: what ``bus.run()`` and ``addrbus.run()`` wait for."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals(event: asyncio.Event) -> Iterator[None]:
    """Set ``event`` on SIGINT and SIGTERM while inside; a no-op off the main thread."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, event.set)
            except (NotImplementedError, RuntimeError):  # Windows
                continue
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
