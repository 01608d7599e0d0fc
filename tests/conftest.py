"""Shared fixtures: every async test runs on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from addrbus import EventBus

pytest_plugins = [
    "pytester", "tests.fixtures_redis", "tests.fixtures_nats", "tests.fixtures_netns", "tests.fixtures_mqtt",
]

_counter = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Mark every coroutine test for anyio's plugin (before parametrization), so
    # tests read like users' code, without a decorator on each.
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unique(prefix: str = "t") -> str:
    """Return a name no other test uses (addresses, hubs, namespaces)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def address() -> str:
    return unique("addr")


@pytest.fixture
async def make_bus() -> AsyncIterator[Callable[..., EventBus]]:
    """Build buses as users do; every one is stopped at teardown."""
    buses: list[EventBus] = []

    def make(url: str | None = None, **options: Any) -> EventBus:
        bus = EventBus(url, **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()
