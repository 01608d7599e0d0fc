"""The ``net`` fixture: each security test runs on every transport that carries frames."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures_netns import require_private_netns
from tests.security._harness import MemoryNet, NatsNet, Net, RedisNet, UdpNet

TRANSPORTS = [
    pytest.param("memory"),
    pytest.param("udp", marks=pytest.mark.multicast),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
]


@pytest.fixture(params=TRANSPORTS)
async def net(request: pytest.FixtureRequest) -> AsyncIterator[Net]:
    """Yield one transport under test: memory://NAME?serialize=1, udp://, redis:// or nats://."""
    if request.param == "udp":
        require_private_netns()
        transport: Net = UdpNet()
    elif request.param == "redis":
        transport = RedisNet(request.getfixturevalue("redis_server"))
    elif request.param == "nats":
        transport = NatsNet(request.getfixturevalue("nats_server"))
    else:
        transport = MemoryNet()
    try:
        yield transport
    finally:
        await transport.aclose()
