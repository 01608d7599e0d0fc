"""Shared by the tests of issue 12 (hostile and careless use): the xfail mark and a bounded, timed await."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.transports.test_udp import udp_url

WAIT = 10.0  # seconds: a generous bound on what should take milliseconds

TRANSPORTS = [
    pytest.param("memory"),
    pytest.param("udp", marks=pytest.mark.multicast),
    pytest.param("redis", marks=pytest.mark.redis),
]
#: Run a test on each transport through the ``net`` fixture of its directory (``request.param`` is the kind).
on_every_transport = pytest.mark.parametrize("net", TRANSPORTS, indirect=True)


def issue(item: str) -> pytest.MarkDecorator:
    """Mark a test that fails on today's code: the fix of ``item`` turns it green (and the strict mark then fails)."""
    return pytest.mark.xfail(strict=True, reason=f"issue 12: {item}")


async def timed(coro: Any, bound: float = WAIT) -> tuple[Any, float]:
    """Await ``coro`` for at most ``bound`` seconds; return its result or exception, and the seconds it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        async with asyncio.timeout(bound):
            result = await coro
    except Exception as exc:
        result = exc
    return result, loop.time() - began


#: The four ways users run one bus: a hub passing objects, a hub through the codec, udp://, redis://.
FOUR_WAYS = [
    pytest.param("memory"),
    pytest.param("memory-serialize"),
    pytest.param("udp", marks=pytest.mark.multicast),
    pytest.param("redis", marks=pytest.mark.redis),
]


def url_of(request: pytest.FixtureRequest) -> str:
    """Return a bus URL for ``request.param`` (one of FOUR_WAYS) that the buses of one test share."""
    kind: str = request.param
    if kind == "memory":
        return f"memory://{unique('hub')}"
    if kind == "memory-serialize":
        return f"memory://{unique('hub')}?serialize=1"
    if kind == "udp":
        require_private_netns()
        return udp_url()
    return str(request.getfixturevalue("redis_server").url)
