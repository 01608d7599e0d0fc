"""Shared by the tests of issue 12 (hostile and careless use): the xfail mark and a bounded, timed await."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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
