"""Issue 12, item 3: a passive pattern subscriber on Redis changes nothing the bus decides.

PUBLISH replies how many clients got a message, pattern subscribers included.
With a monitor (``PSUBSCRIBE addrbus:*``) on the private server, ``start()``
once waited 2 s for a hello answer nobody owed, and a dead node's inbox looked
read (found out 2.9 s later, by missed heartbeats, instead of at the next
request). Each test here runs with a real monitor client and checks the figure
the bus has without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from addrbus import EventBus, RecipientGone
from addrbus.transports.redis import wire
from tests.conftest import unique
from tests.fixtures_redis import RedisServer
from tests.security._harness import FAKE_NODE, RedisNet, frame
from tests.test_redis_faults import hanging_consumer, timed

pytestmark = pytest.mark.redis

WAIT = 10.0
PROMPT = 0.5  # seconds: what "at once" may take on this loaded machine (the figures are milliseconds)


class Monitor:
    """A plain client subscribed to a pattern, as a monitoring tool would be; it reads nothing."""

    def __init__(self, server: RedisServer, pattern: str = "addrbus:*") -> None:
        self.client = aioredis.Redis(host="127.0.0.1", port=server.port, protocol=2)
        self.pubsub = self.client.pubsub()
        self.pattern = pattern

    async def __aenter__(self) -> Monitor:
        await self.pubsub.psubscribe(self.pattern)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.client.aclose()


@pytest.fixture
async def monitor(redis_server: RedisServer) -> AsyncIterator[Monitor]:
    async with Monitor(redis_server) as watching:
        yield watching


def transport_stats(bus: EventBus) -> dict[str, int]:
    return {k.removeprefix("transport."): v for k, v in bus.stats().items() if k.startswith("transport.")}


async def test_start_waits_for_the_real_nodes_only(
    redis_server: RedisServer, monitor: Monitor, make_bus: Callable[..., EventBus], address: str
) -> None:
    """With a monitor, a lone bus starts at once, and a third bus still waits for (and hears) the two others."""
    namespace = unique("ns")
    took = []
    buses = [make_bus(redis_server.url, namespace=namespace) for _ in range(3)]
    for index, bus in enumerate(buses):
        bus.on(f"{address}-{index}", lambda: None)
        began = time.monotonic()
        await bus.start()
        took.append(time.monotonic() - began)
    assert max(took) < PROMPT, f"start() took {', '.join(f'{t:.3f}' for t in took)} s with a monitor"
    # The last one waited for exactly the answers owed: it knows both others when start() returns.
    assert set(buses[2].nodes()) == {bus.node_id for bus in buses}
    stats = transport_stats(buses[2])
    assert stats["pattern_subscriptions"] == 1 and stats["subscriber_checks"] >= 1


async def test_a_killed_consumer_fails_its_requests_at_once_despite_a_monitor(
    redis_server: RedisServer, monitor: Monitor, make_bus: Callable[..., EventBus], address: str
) -> None:
    """A SIGKILLed consumer: the next request to it, and the five it owed, fail with RecipientGone at once."""
    namespace = unique("ns")
    async with hanging_consumer(redis_server.url, namespace, address) as (node, handling, process):
        bus = make_bus(redis_server.url, namespace=namespace, stop_timeout=1.0)
        await bus.start()
        await bus.wait_for_handlers(address, 1, timeout=WAIT)
        held = [asyncio.ensure_future(timed(bus.request(address, n, timeout=WAIT))) for n in range(5)]
        for _ in held:
            await handling()
        process.kill()  # SIGKILL: no goodbye
        await asyncio.wait_for(process.wait(), WAIT)
        inbox = wire.inbox_channel(wire.channel_prefix(namespace), node).decode()
        for _ in range(5000):  # a bounded poll of Redis' own view: at most ~5 s
            if redis_server.cli("PUBSUB", "NUMSUB", inbox)[1] == 0:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError("Redis kept the dead consumer's subscription")
        fresh, fresh_took = await timed(bus.request(address, 99, timeout=WAIT))
        owed = await asyncio.wait_for(asyncio.gather(*held), PROMPT)
    assert (fresh, [outcome for outcome, _ in owed]) == ("RecipientGone", ["RecipientGone"] * 5)
    assert fresh_took < PROMPT, f"the dead consumer was found out after {fresh_took:.2f} s"
    print(f"\nwith a monitor: a request to a SIGKILLed consumer failed in {fresh_took * 1000:.1f} ms, "
          "with the 5 it owed")


async def test_a_monitor_that_comes_later_is_noticed_within_a_heartbeat(
    redis_server: RedisServer, make_bus: Callable[..., EventBus], address: str
) -> None:
    """A monitor subscribing after start is seen at the next heartbeat; then a dead inbox is found out at once."""
    namespace = unique("ns")
    url = redis_server.url + "?heartbeat=0.05"
    bus = make_bus(url, namespace=namespace)
    peer = make_bus(url, namespace=namespace)
    peer.on(address, lambda: "here")
    await bus.start()
    await peer.start()
    await bus.wait_for_handlers(address, 1, timeout=WAIT)
    assert transport_stats(bus)["pattern_subscriptions"] == 0
    async with Monitor(redis_server):
        for _ in range(1000):  # bounded: each turn is 10 ms; a heartbeat is 50 ms
            if transport_stats(bus)["pattern_subscriptions"] == 1:
                break
            await asyncio.sleep(0.01)
        assert transport_stats(bus)["pattern_subscriptions"] == 1
        assert await bus.request(address, timeout=WAIT) == "here"
        # A node that died without a goodbye: its last state (from a plain client), no reader on its inbox.
        gone = address + ".gone"
        body = {"v": 2, "seq": 1, "hb": 1.0, "addrs": {gone: 1}}
        announce = frame(namespace, "state", body, kind="ctl", src=FAKE_NODE)
        net = RedisNet(redis_server)
        try:
            await net.inject(bus, announce)
        finally:
            await net.aclose()
        for _ in range(1000):  # bounded: each turn is 10 ms
            if FAKE_NODE in bus.nodes():
                break
            await asyncio.sleep(0.01)
        assert bus.nodes()[FAKE_NODE] == {gone: 1}
        began = time.monotonic()
        with pytest.raises(RecipientGone):
            await bus.request(gone, timeout=WAIT)
        took = time.monotonic() - began
    assert took < PROMPT, f"the dead node was found out after {took:.2f} s"


async def test_without_a_monitor_nothing_is_checked(
    redis_server: RedisServer, make_bus: Callable[..., EventBus], address: str
) -> None:
    """The fast path stays as it was: no pattern subscription, no NUMSUB before any publish."""
    namespace = unique("ns")
    bus, peer = make_bus(redis_server.url, namespace=namespace), make_bus(redis_server.url, namespace=namespace)
    peer.on(address, lambda x: x)
    await bus.start()
    await peer.start()
    await bus.wait_for_handlers(address, 1, timeout=WAIT)
    assert await asyncio.gather(*(bus.request(address, i, timeout=WAIT) for i in range(100))) == list(range(100))
    await bus.publish(address + ".none", 1)
    stats = transport_stats(bus)
    assert (stats["pattern_subscriptions"], stats["subscriber_checks"]) == (0, 0)


async def test_a_server_that_refuses_pubsub_queries_gets_the_counts_trusted(
    redis_server: RedisServer, make_bus: Callable[..., EventBus], address: str
) -> None:
    """A user whose ACL forbids PUBSUB NUMPAT/NUMSUB still runs a bus, with PUBLISH counts taken as they are."""
    user, password = unique("user").replace("-", "_"), "pw-" + unique("pw")
    redis_server.cli("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-pubsub|numpat",
                     "-pubsub|numsub")
    try:
        url = f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0"
        namespace = unique("ns")
        bus, peer = make_bus(url, namespace=namespace), make_bus(url, namespace=namespace)
        peer.on(address, lambda x: x)
        began = time.monotonic()
        await bus.start()
        await peer.start()
        took = time.monotonic() - began
        await bus.wait_for_handlers(address, 1, timeout=WAIT)
        assert await bus.request(address, 7, timeout=WAIT) == 7
        assert transport_stats(bus)["pattern_subscriptions"] == -1  # unknown: the server would not say
        assert took < PROMPT
        await bus.stop()
        await peer.stop()
    finally:
        redis_server.cli("ACL", "DELUSER", user)


async def test_a_refused_numsub_falls_back_to_the_counts_with_one_warning(
    redis_server: RedisServer, make_bus: Callable[..., EventBus], address: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A user allowed PUBSUB NUMPAT but not NUMSUB: a transport's first refused check warns, then counts are trusted."""
    user, password = unique("user").replace("-", "_"), "pw-" + unique("pw")
    redis_server.cli("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-pubsub|numsub")
    try:
        url = f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0?heartbeat=0.05"
        namespace = unique("ns")
        bus, peer = make_bus(url, namespace=namespace), make_bus(url, namespace=namespace)
        peer.on(address, lambda x: x)
        await bus.start()
        await peer.start()
        await bus.wait_for_handlers(address, 1, timeout=WAIT)
        async with Monitor(redis_server):
            for _ in range(1000):  # bounded: each turn is 10 ms; a heartbeat is 50 ms
                if transport_stats(bus)["pattern_subscriptions"] == 1:
                    break
                await asyncio.sleep(0.01)
            assert transport_stats(bus)["pattern_subscriptions"] == 1
            results = [await bus.request(address, i, timeout=WAIT) for i in range(5)]
        assert results == list(range(5))
        assert transport_stats(bus)["pattern_subscriptions"] == -1
        refusals = [r for r in caplog.records if "refuses PUBSUB NUMSUB" in r.getMessage()]
        assert 1 <= len(refusals) <= 2  # once per transport that checked (the requester, the replier)
        await bus.stop()
        await peer.stop()
    finally:
        redis_server.cli("ACL", "DELUSER", user)
