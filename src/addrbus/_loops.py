"""Which event loop runs the bus: asyncio's own, or uvloop (``pip install 'addrbus[speed]'``)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._exceptions import ConfigError

R = TypeVar("R")

INSTALL_HINT = "uvloop=True needs the uvloop package: pip install 'addrbus[speed]'"


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

    :raises ConfigError: with ``uvloop=True`` and uvloop not installed (``main`` is closed, never run).
    """
    try:
        factory = None if uvloop is False else uvloop_factory(required=uvloop is True)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
