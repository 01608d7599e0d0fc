"""The bus over NATS under real faults: a cluster losing the server a client is on, a lone server restarting.

Every request resolves (reply or error) no later than its timeout plus 100 ms,
no handler runs twice, and traffic flows again through another server of the
cluster within 2 s. Servers are private (``fixtures_nats``), killed with SIGKILL.
"""

from __future__ import annotations

import asyncio

import pytest

from addrbus import EventBus
from tests._faults import WAIT, Echo, States, Traffic
from tests.conftest import unique
from tests.fixtures_nats import NatsCluster, NatsServer

pytestmark = pytest.mark.nats

HEARTBEAT = 0.2


def connected_port(bus: EventBus) -> int:
    """Return the port of the server ``bus`` is connected to now."""
    return int(bus._transport._nc.connected_url.port)  # type: ignore[attr-defined]


async def test_cluster_losing_the_clients_server_during_2000_requests(nats_cluster: NatsCluster) -> None:
    namespace, address = unique("ns"), unique("echo")
    servers = nats_cluster.servers
    echo = Echo()
    # The service on one server, the client on the whole list: nats-py picks one at random.
    responder = EventBus(servers[0].url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)
    echo.register(responder, address)
    client = EventBus(nats_cluster.url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)
    async with responder:
        # Connect the client until it is on another server than the service's (random order; bounded).
        for _ in range(20):
            await client.start()
            if connected_port(client) != servers[0].port:
                break
            await client.stop()
        assert connected_port(client) != servers[0].port, "the client kept choosing the service's server"
        victim = next(server for server in servers if server.port == connected_port(client))
        await client.wait_for_handlers(address, 1, timeout=WAIT)
        states = States(client)
        timeout = 0.5
        try:
            async with Traffic(client, address, timeout=timeout, workers=8, max_requests=2000, pace=0.002,
                               margin=0.1) as traffic:
                await traffic.flowing(200)
                loop = asyncio.get_running_loop()
                victim.kill()
                killed = loop.time()
                await states.wait("disconnected")
                await states.wait("reconnected")
                assert connected_port(client) != victim.port
                back = await traffic.ok_after(loop.time(), 2.0)
                assert back - killed <= 2.0, f"requests flowed again {back - killed:.2f} s after the kill"
                await asyncio.wait(traffic._tasks, timeout=60)  # the workers end after 2,000 requests
                outcomes = await traffic.check()
        finally:
            await client.stop()
    assert traffic.sent >= 2000
    assert outcomes["ok"] >= 1800, dict(outcomes)
    echo.assert_no_duplicates()


async def test_a_restarted_server_is_reconnected_and_serves_again(fault_nats: NatsServer) -> None:
    namespace, address = unique("ns"), unique("echo")
    echo = Echo()
    responder = EventBus(fault_nats.url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)
    echo.register(responder, address)
    client = EventBus(fault_nats.url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)
    async with responder, client:
        await client.wait_for_handlers(address, 1, timeout=WAIT)
        states = States(client)
        async with Traffic(client, address, timeout=0.5, margin=0.1) as traffic:
            await traffic.flowing()
            fault_nats.kill()
            await states.wait("disconnected")
            fault_nats.restart()
            await states.wait("reconnected")
            await client.wait_for_handlers(address, 1, timeout=WAIT)
            await traffic.ok_after(asyncio.get_running_loop().time(), WAIT)
            outcomes = await traffic.check()
    assert outcomes["ok"] > 0
    echo.assert_no_duplicates()
