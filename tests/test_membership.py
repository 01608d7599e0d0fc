"""Issue 13: membership that stays small, and delivery by interest.

What users see: a change after start travels as one small delta, not the whole
state; a node may consume 10,000 addresses on every transport (its state is
split to fit each frame); a node that consumes nothing receives no data frames;
on Redis, heartbeat traffic per node does not grow with the bus; a frame of the
old membership protocol is dropped, counted and logged by its version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from addrbus import EventBus, TransportError, generate_key
from addrbus._core.membership import Membership
from addrbus._core.peers import PROTOCOL, RING
from addrbus._core.routing import Router
from addrbus._counters import Counters
from tests._hostile import FOUR_WAYS, url_of
from tests.conftest import unique

WAIT = 10.0


@pytest.fixture(params=FOUR_WAYS)
def url(request: pytest.FixtureRequest) -> str:
    return url_of(request)


@pytest.fixture
async def buses() -> AsyncIterator[Callable[..., EventBus]]:
    made: list[EventBus] = []

    def make(url: str, **options: Any) -> EventBus:
        bus = EventBus(url, stop_timeout=1.0, **options)
        made.append(bus)
        return bus

    yield make
    await asyncio.gather(*(bus.stop() for bus in made))


def received(bus: EventBus) -> int:
    return bus.stats()["frames.received"]


def subscriptions(bus: EventBus) -> int:
    return bus.stats()["transport.interest_subscriptions"]


async def until(check: Callable[[], bool], what: str, bound: float = WAIT) -> None:
    """Wait (bounded) until ``check()`` holds, yielding to the loop between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not check():
        assert loop.time() < deadline, f"not within {bound} s: {what}"
        await asyncio.sleep(0.01)


# -- the protocol's version ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, 1, 3, "2"])
async def test_a_frame_of_another_protocol_version_is_dropped_counted_and_logged(
        version: Any, caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    router = Router()
    members = Membership(router, _no_send, lambda node, why: None, heartbeat=1.0, count=counters.count)
    body: dict[str, Any] = {"seq": 1, "hb": 1.0, "addrs": {"a": 1}}
    if version is not None:
        body["v"] = version
    with caplog.at_level(logging.WARNING, logger="addrbus.membership"):
        members.on_ctl("state", "00000000000000aa", body)
    assert router.nodes == {}, "the frame was read"
    assert counters.get("dropped.protocol_version") == 1
    named = repr(1 if version is None else version)
    assert any(f"protocol version {named}" in r.getMessage() and f"speaks version {PROTOCOL}" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def _no_send(op: str, body: dict[str, Any], to: str | None) -> None:
    return None


# -- deltas and parts ------------------------------------------------------------------------------


async def test_a_change_after_start_travels_as_one_delta_whatever_the_state(
        url: str, buses: Callable[..., EventBus]) -> None:
    a, b = buses(url, heartbeat=60.0), buses(url, heartbeat=60.0)
    for i in range(3_000):
        a.on(f"big.{i}", _echo)
    await b.start()
    await a.start()
    await b.wait_for_handlers("big.2999", timeout=WAIT)
    before = received(b)
    late = unique("late")
    a.on(late, _echo)
    await b.wait_for_handlers(late, timeout=WAIT)
    assert received(b) - before == 1, "the change did not travel as one frame"
    assert len(b.nodes()[a.node_id]) == 3_001
    assert await b.request(late, "x", timeout=WAIT) == "x"


async def _echo(body: Any) -> Any:
    return body


@pytest.mark.parametrize("url", [pytest.param("memory-serialize"), pytest.param("udp", marks=pytest.mark.multicast),
                                 pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_ten_thousand_addresses_are_announced_in_parts_at_start_and_after(
        url: str, buses: Callable[..., EventBus]) -> None:
    """Half consumed before start (a state in parts), half after (deltas in parts); every peer routes to all."""
    if url.startswith("redis"):
        url += "?max_frame_size=65536"  # many parts, on the transport with the largest frames
    peer, many = buses(url), buses(url)
    for i in range(5_000):
        many.on(f"many.{i}", _echo)
    await peer.start()
    await many.start()
    assert await peer.wait_for_handlers("many.4999", timeout=2.0) == 1
    for i in range(5_000, 10_000):
        many.on(f"many.{i}", _echo)
    assert await peer.wait_for_handlers("many.9999", timeout=2.0) == 1
    await until(lambda: len(peer.nodes()[many.node_id]) == 10_000, "every part arrived", 2.0)
    assert await peer.request("many.9999", 1, timeout=WAIT) == 1
    assert many.stats().get("failures.no_handlers", 0) == 0


async def test_removing_a_consumer_reaches_every_peer(url: str, buses: Callable[..., EventBus],
                                                      address: str) -> None:
    a, b = buses(url), buses(url)
    await a.start()
    reg = a.consumer(address, _echo)
    await b.start()
    await b.wait_for_handlers(address, timeout=WAIT)
    reg.unregister()
    assert await b.wait_for_handlers(address, 0, exactly=True, timeout=WAIT) == 0
    assert address not in b.nodes()[a.node_id]


# -- delivery by interest --------------------------------------------------------------------------


ROUTING = FOUR_WAYS


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "sealed"])
@pytest.mark.parametrize("url", ROUTING, indirect=True)
async def test_a_node_that_consumes_nothing_receives_no_data_frames(
        url: str, sealed: bool, buses: Callable[..., EventBus], address: str) -> None:
    """Publishes, sends and requests never reach a bystander's bus.

    The memory hub and Redis route them; on UDP the bystander hears each publish
    and drops it on its tag, before the bus sees it.
    """
    key = {"shared_key": generate_key()} if sealed else {}
    consumer, bystander, sender = (buses(url, heartbeat=60.0, **key) for _ in range(3))
    got: list[int] = []

    @consumer.on(address)
    async def take(n: int) -> int:
        got.append(n)
        return n

    for bus in (consumer, bystander, sender):
        await bus.start()
    await sender.wait_for_handlers(address, timeout=WAIT)
    await bystander.wait_for_handlers(address, timeout=WAIT)
    before = received(bystander)
    for n in range(100):
        await sender.publish(address, n)
        await sender.send(address, n)
        assert await sender.request(address, n, timeout=WAIT) == n
    await until(lambda: len(got) == 300, "every message handled")
    assert received(bystander) == before


@pytest.mark.redis
async def test_on_redis_a_consumer_added_after_start_gets_publishes_and_one_removed_stops(
        redis_server: Any, buses: Callable[..., EventBus], address: str) -> None:
    """Subscribing happens before peers route to the new consumer; unsubscribing after they stop."""
    consumer, sender = buses(redis_server.url), buses(redis_server.url)
    for bus in (consumer, sender):
        await bus.start()
    got: list[int] = []
    registration = consumer.on(address, got.append)
    await sender.wait_for_handlers(address, timeout=WAIT)
    assert subscriptions(consumer) == 1
    for n in range(20):
        await sender.publish(address, n)  # the first publish routed by the delta is never lost
    await until(lambda: len(got) == 20, "every publish after the consumer was announced")
    registration.unregister()
    await sender.wait_for_handlers(address, 0, exactly=True, timeout=WAIT)
    await until(lambda: subscriptions(consumer) == 0, "unsubscribed")
    before = received(consumer)
    for n in range(20):
        await sender.publish(address, n)
    assert received(consumer) == before, "a publish nobody consumes reached a node"


@pytest.mark.redis
@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "sealed"])
async def test_on_redis_a_channel_per_consumed_address_named_by_a_digest_when_sealed(
        redis_server: Any, sealed: bool, buses: Callable[..., EventBus], address: str) -> None:
    """Redis routes by channel; on a sealed bus the channel's name reveals nothing of the address."""
    key = {"shared_key": generate_key()} if sealed else {}
    consumer = buses(redis_server.url, namespace=unique("ns"), **key)
    consumer.on(address, lambda n: None)
    await consumer.start()
    channels = [c.decode() for c in redis_server.client().pubsub_channels(f"*{consumer.namespace}*:a:*")]
    assert len(channels) == 1, channels
    assert (address in channels[0]) is not sealed


@pytest.mark.redis
async def test_an_address_whose_subscription_failed_is_subscribed_and_announced_at_the_next_heartbeat(
        redis_server: Any, buses: Callable[..., EventBus], address: str) -> None:
    consumer, sender = buses(redis_server.url, heartbeat=0.2), buses(redis_server.url, heartbeat=0.2)
    for bus in (consumer, sender):
        await bus.start()
    transport = consumer._transport
    real = transport.subscribe
    failures: list[object] = []

    async def fails_once(keys: Any) -> None:
        if not failures:
            failures.append(keys)
            raise TransportError("Redis did not confirm in time (injected)")
        await real(keys)

    transport.subscribe = fails_once  # type: ignore[method-assign]
    got: list[int] = []
    consumer.on(address, got.append)
    await sender.wait_for_handlers(address, timeout=WAIT)
    assert failures, "the subscription never failed"
    await sender.publish(address, 3)
    await until(lambda: got == [3], "the publish reached the consumer")


@pytest.mark.redis
async def test_on_redis_interest_channels_survive_a_reconnect(
        fault_redis: Any, buses: Callable[..., EventBus], address: str) -> None:
    """After Redis restarts, a consumer is subscribed again before its bus reports reconnected."""
    consumer, sender = buses(fault_redis.url), buses(fault_redis.url)
    got: list[int] = []
    consumer.on(address, got.append)
    for bus in (consumer, sender):
        await bus.start()
    await sender.wait_for_handlers(address, timeout=WAIT)
    back = {bus: asyncio.Event() for bus in (consumer, sender)}
    for bus, event in back.items():
        bus.on_transport_state(lambda state, event=event: state == "reconnected" and event.set())
    fault_redis.kill()
    fault_redis.restart()
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in back.values())), WAIT)
    await sender.wait_for_handlers(address, timeout=WAIT)
    await sender.publish(address, 7)
    await until(lambda: got == [7], "the first publish after both reconnected reached the consumer")
    assert subscriptions(consumer) == 1


async def test_publishes_reach_every_consumer_and_only_once(url: str, buses: Callable[..., EventBus],
                                                             address: str) -> None:
    one, two, sender = buses(url), buses(url), buses(url)
    seen: dict[str, list[int]] = {"one": [], "two": []}
    one.on(address, lambda n: seen["one"].append(n))
    two.on(address, lambda n: seen["two"].append(n))
    for bus in (one, two, sender):
        await bus.start()
    await sender.wait_for_handlers(address, 2, timeout=WAIT)
    for n in range(50):
        await sender.publish(address, n)
    await until(lambda: len(seen["one"]) >= 50 and len(seen["two"]) >= 50, "both consumers got every publish")
    assert sorted(seen["one"]) == sorted(seen["two"]) == list(range(50))


# -- liveness on Redis: a ring, not all-to-all ------------------------------------------------------


@pytest.mark.redis
async def test_heartbeat_traffic_per_node_does_not_grow_with_the_bus(redis_server: Any,
                                                                      buses: Callable[..., EventBus]) -> None:
    """12 nodes at rest: each receives about 2 pings and 2 pongs a heartbeat, not one ping from each of 11."""
    url, ns, hb = redis_server.url, unique("ns"), 0.1
    nodes = [buses(url, namespace=ns, heartbeat=hb) for _ in range(12)]
    for bus in nodes:
        await bus.start()
    await until(lambda: all(len(bus.nodes()) == 12 for bus in nodes), "every node knows every node")
    loop = asyncio.get_running_loop()
    before, began = [received(bus) for bus in nodes], loop.time()
    await asyncio.sleep(20 * hb)  # a measuring window, not a synchronisation
    beats = (loop.time() - began) / hb
    per_beat = max(received(bus) - b for bus, b in zip(nodes, before, strict=True)) / beats
    assert per_beat <= 2 * RING + 1, f"a node received {per_beat:.1f} frames a heartbeat"
    assert all(len(bus.nodes()) == 12 for bus in nodes), "a node was dropped at rest"


@pytest.mark.redis
async def test_a_node_that_vanishes_is_gone_from_every_node(redis_server: Any,
                                                            buses: Callable[..., EventBus], address: str) -> None:
    """A node whose connection closes without a bye: its requests fail and every peer forgets it, in seconds."""
    url, ns = redis_server.url, unique("ns")
    peers = [buses(url, namespace=ns, heartbeat=0.2) for _ in range(5)]
    victim = buses(url, namespace=ns, heartbeat=0.2)
    entered = asyncio.Event()

    @victim.on(address)
    async def hang(body: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    for bus in (*peers, victim):
        await bus.start()
    await peers[0].wait_for_handlers(address, timeout=WAIT)
    pending = asyncio.ensure_future(peers[0].request(address, 1, timeout=30))
    await asyncio.wait_for(entered.wait(), WAIT)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await victim._transport.stop()  # its connections close; no bye is said
    with pytest.raises(Exception) as failure:
        await asyncio.wait_for(pending, 3.0)
    assert type(failure.value).__name__ == "RecipientGone"
    await until(lambda: all(victim.node_id not in bus.nodes() for bus in peers), "every peer forgot it", 3.0)
    assert loop.time() - began < 3.0


@pytest.mark.redis
async def test_a_node_told_it_is_gone_says_hello_again(redis_server: Any, buses: Callable[..., EventBus],
                                                       address: str) -> None:
    """A ``gone`` naming a live node (a confusion, or a forger): the node answers it, and peers learn it again."""
    url, ns = redis_server.url, unique("ns")
    a, b = buses(url, namespace=ns, heartbeat=0.2), buses(url, namespace=ns, heartbeat=0.2)
    b.on(address, _echo)
    await a.start()
    await b.start()
    await a.wait_for_handlers(address, timeout=WAIT)
    await a._membership._declare_gone(b.node_id, "a test says so")  # broadcast: b hears it too
    assert await a.wait_for_handlers(address, timeout=WAIT) == 1
    assert await a.request(address, 5, timeout=WAIT) == 5
