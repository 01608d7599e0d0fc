"""Which event loop runs the bus: asyncio's own, or uvloop (``pip install 'addrbus[speed]'``)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._exceptions import BusError, ConfigError

R = TypeVar("R")

INSTALL_HINT = "uvloop=True needs the uvloop package: pip install 'addrbus[speed]'"
IN_A_LOOP = (
    "bus.run() starts its own event loop, and this code already runs in one: inside a coroutine,"
    " use 'async with bus:' (or 'await bus.start()' and 'await bus.stop()') and await your code in it"
)


def uvloop_factory(required: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory; None if it is not installed (ConfigError if ``required``)."""
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        if required:
            raise ConfigError(INSTALL_HINT) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, R], uvloop: bool | None = False) -> R:
    """Run ``main`` as ``asyncio.run`` does: on uvloop if ``uvloop`` (None: if it is installed).

    :raises BusError: if an event loop already runs in this thread (``main`` is closed, never run).
    :raises ConfigError: with ``uvloop=True`` and uvloop not installed (``main`` is closed, never run).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop: ours will be the only one
    else:
        # asyncio.Runner would refuse too, but with "Cannot run the event loop while another
        # loop is running", which does not say what to write instead.
        main.close()
        raise BusError(IN_A_LOOP)
    try:
        factory = None if uvloop is False else uvloop_factory(required=uvloop is True)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def watch_end(callback: Callable[[], None]) -> asyncio.Task[None]:
    """Call ``callback`` when the running loop shuts down; cancel the returned task to stop watching.

    ``asyncio.run`` (and ``asyncio.Runner``) cancel every task left before closing their
    loop: this task's cancellation is how a part of the bus learns that its loop is
    ending. ``callback`` runs on any cancellation, the owner's own included.
    """

    async def watch() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never resolved: only a cancellation ends it
        finally:
            callback()

    return asyncio.create_task(watch(), name="addrbus-loop-watch")
