"""addrbus.prometheus: the bus's counters, gauges and request durations, read by a Prometheus registry."""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from addrbus import ConfigError, EventBus, NoHandlers, RecipientFailure, RequestTimeout, generate_key
from addrbus.prometheus import DEFAULT_BUCKETS, OTHER, BusCollector, register
from tests.conftest import unique

WAIT = 5.0
DURATION = "addrbus_request_duration_seconds"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def ns() -> str:
    return unique("ns")


def sample(registry: CollectorRegistry, name: str, ns: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"namespace": ns, **labels})


def families(registry: CollectorRegistry) -> dict[str, Any]:
    """Return the registry's families as a scraper reads them: generated as text, parsed again."""
    text = generate_latest(registry).decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_counters_and_gauges_come_from_stats(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                                   ns: str, address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry)
    assert sample(registry, "addrbus_up", ns) == 0  # not started yet
    heard = asyncio.Event()

    @bus.on(f"{address}.echo")
    async def echo(body: Any) -> Any:
        if body == "publish":
            heard.set()
        return body

    @bus.on(f"{address}.boom")
    async def boom(body: Any) -> None:
        raise ValueError("boom")

    await bus.start()
    await bus.publish(f"{address}.echo", "publish")
    await asyncio.wait_for(heard.wait(), WAIT)
    await bus.send(f"{address}.echo", "send")
    assert await bus.request(f"{address}.echo", "request", timeout=WAIT) == "request"
    with pytest.raises(RecipientFailure):
        await bus.request(f"{address}.boom", 1, timeout=WAIT)
    with pytest.raises(NoHandlers):
        await bus.request(f"{address}.nobody", 1, timeout=WAIT)
    with pytest.raises(NoHandlers):
        await bus.send(f"{address}.nobody", 1)
    assert await bus.drain(WAIT)

    stats = bus.stats()
    for name, key in (("addrbus_sent_total", "sent"), ("addrbus_published_total", "published"),
                      ("addrbus_requests_total", "requests"), ("addrbus_delivered_total", "delivered"),
                      ("addrbus_replies_total", "replies"), ("addrbus_frames_received_total", "frames.received")):
        assert sample(registry, name, ns) == stats[key], name
    assert sample(registry, "addrbus_sent_total", ns) == 1
    assert sample(registry, "addrbus_published_total", ns) == 1
    assert sample(registry, "addrbus_requests_total", ns) == 2
    assert sample(registry, "addrbus_delivered_total", ns) == 4
    assert sample(registry, "addrbus_failures_total", ns, type="handler") == 1
    assert sample(registry, "addrbus_failures_total", ns, type="recipient_failure") == 1
    assert sample(registry, "addrbus_failures_total", ns, type="no_handlers") == 2
    assert sample(registry, "addrbus_failures_total", ns, type="timeout") == 0  # there before its first count
    assert sample(registry, "addrbus_pending_requests", ns) == 0
    assert sample(registry, "addrbus_known_nodes", ns) == 1
    assert sample(registry, "addrbus_handlers", ns, address=f"{address}.echo") == 1
    assert sample(registry, "addrbus_handlers", ns, address=f"{address}.boom") == 1
    assert sample(registry, "addrbus_up", ns) == 1
    info = {"node": bus.node_id, "transport": "memory"}
    version = families(registry)["addrbus_info"].samples[0].labels["version"]
    assert sample(registry, "addrbus_info", ns, version=version, **info) == 1
    await bus.stop()
    assert sample(registry, "addrbus_up", ns) == 0


async def test_dropped_counts_by_reason(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                        ns: str, address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry)
    await bus.start()
    bus._counters.count("dropped.late_reply")  # a drop a test cannot easily make happen on one node
    bus._counters.count("dropped.late_reply")
    assert sample(registry, "addrbus_dropped_total", ns, reason="late_reply") == 2
    assert sample(registry, "addrbus_dropped_total", ns, reason="overflow") is None  # not counted yet


async def test_every_request_is_timed_per_address(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                                  ns: str, address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry)
    release = asyncio.Event()
    bus.on(f"{address}.a", lambda body: body)
    bus.on(f"{address}.b", lambda body: body)

    @bus.on(f"{address}.slow")
    async def slow(body: Any) -> None:
        await release.wait()

    await bus.start()
    for _ in range(3):
        await bus.request(f"{address}.a", 1, timeout=WAIT)
    await bus.request(f"{address}.b", 1, timeout=WAIT)
    await bus.publish(f"{address}.a", 1)  # publishes and sends are not timed
    await bus.send(f"{address}.b", 1)
    with pytest.raises(NoHandlers):
        await bus.request(f"{address}.nobody", 1, timeout=WAIT)
    with pytest.raises(RequestTimeout):
        await bus.request(f"{address}.slow", 1, timeout=0.05)
    release.set()
    assert await bus.drain(WAIT)

    for suffix, count in (("a", 3), ("b", 1), ("nobody", 1), ("slow", 1)):
        labels = {"address": f"{address}.{suffix}"}
        assert sample(registry, f"{DURATION}_count", ns, **labels) == count, suffix
        assert sample(registry, f"{DURATION}_bucket", ns, le="+Inf", **labels) == count
    slowest = sample(registry, f"{DURATION}_sum", ns, address=f"{address}.slow")
    assert slowest is not None and slowest >= 0.04  # it took its timeout
    assert sample(registry, f"{DURATION}_bucket", ns, le="0.01", address=f"{address}.slow") == 0
    buckets = [s for s in families(registry)[DURATION].samples
               if s.name.endswith("_bucket") and s.labels["address"] == f"{address}.a"]
    assert [s.labels["le"] for s in buckets] == [*(repr(b) for b in DEFAULT_BUCKETS), "+Inf"]
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative


async def test_buckets_can_be_chosen(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                     ns: str, address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry, buckets=[0.5, 1, math.inf])
    bus.on(address, lambda body: body)
    await bus.start()
    await bus.request(address, 1, timeout=WAIT)
    les = [s.labels["le"] for s in families(registry)[DURATION].samples if s.name.endswith("_bucket")]
    assert les == ["0.5", "1.0", "+Inf"]
    assert sample(registry, f"{DURATION}_bucket", ns, le="1.0", address=address) == 1


async def test_address_labels_are_bounded(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                          ns: str, address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry, max_addresses=2)
    names = [f"{address}.{n}" for n in range(4)]
    for name in names:
        bus.on(name, lambda body: body)
    await bus.start()
    for name in names:  # the first two addresses requested keep their label
        await bus.request(name, 1, timeout=WAIT)
    await bus.request(names[3], 1, timeout=WAIT)

    assert sample(registry, f"{DURATION}_count", ns, address=names[0]) == 1
    assert sample(registry, f"{DURATION}_count", ns, address=names[1]) == 1
    assert sample(registry, f"{DURATION}_count", ns, address=OTHER) == 3
    assert sample(registry, "addrbus_handlers", ns, address=names[0]) == 1
    assert sample(registry, "addrbus_handlers", ns, address=OTHER) == 2
    labels = {s.labels["address"] for family in families(registry).values() for s in family.samples
              if "address" in s.labels}
    assert labels == {names[0], names[1], OTHER}


async def test_unregister_removes_every_metric_and_the_timing(make_bus: Callable[..., EventBus],
                                                              registry: CollectorRegistry, ns: str,
                                                              address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    collector = register(bus, registry)
    assert collector.registry is registry and collector.bus is bus
    release, entered = asyncio.Event(), asyncio.Event()
    bus.on(address, lambda body: body)

    @bus.on(f"{address}.slow")
    async def slow(body: Any) -> int:
        entered.set()
        await release.wait()
        return 1

    await bus.start()
    await bus.request(address, 1, timeout=WAIT)
    assert len(bus._hooks.installed) == 1
    in_flight = asyncio.ensure_future(bus.request(f"{address}.slow", 1, timeout=WAIT))
    await asyncio.wait_for(entered.wait(), WAIT)

    collector.unregister()
    assert bus._hooks.installed == []
    assert collector.registry is None
    release.set()
    assert await asyncio.wait_for(in_flight, WAIT) == 1  # it ends after unregister(): not recorded
    await bus.request(address, 1, timeout=WAIT)
    for name in ("addrbus_up", "addrbus_sent_total", "addrbus_requests_total", "addrbus_known_nodes"):
        assert sample(registry, name, ns) is None, name
    assert sample(registry, f"{DURATION}_count", ns, address=address) is None
    assert list(registry.collect()) == []
    collector.unregister()  # idempotent

    # Its own samples stopped at the unregister: one request to address, none to the slow one.
    durations = {s.labels["address"]: s.value for family in collector.collect() if family.name == DURATION
                 for s in family.samples if s.name.endswith("_count")}
    assert durations == {address: 1}


async def test_the_exposition_parses_and_names_every_metric(make_bus: Callable[..., EventBus],
                                                            registry: CollectorRegistry, ns: str,
                                                            address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry)
    bus.on(address, lambda body: body)
    await bus.start()
    await bus.request(address, 1, timeout=WAIT)
    found = families(registry)
    counters = {"addrbus_sent", "addrbus_published", "addrbus_requests", "addrbus_delivered", "addrbus_replies",
                "addrbus_frames_received", "addrbus_failures", "addrbus_dropped", "addrbus_frames_rejected",
                "addrbus_stalls"}
    gauges = {"addrbus_info", "addrbus_up", "addrbus_pending_requests", "addrbus_known_nodes", "addrbus_handlers"}
    assert {name for name, family in found.items() if family.type == "counter"} == counters
    assert {name for name, family in found.items() if family.type == "gauge"} == gauges
    assert found[DURATION].type == "histogram"
    assert set(found) == counters | gauges | {DURATION}  # memory:// has no transport counters, no key no crypto
    assert all(s.labels["namespace"] == ns for family in found.values() for s in family.samples)
    assert not any("node" in s.labels for name, family in found.items() if name != "addrbus_info"
                   for s in family.samples)


async def test_transport_counters_and_gauges(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                             ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = make_bus("memory://", namespace=ns)
    monkeypatch.setattr(bus._transport, "stats", lambda: {"frames_sent": 7, "pending": 2, "odd-key": 1})
    register(bus, registry)
    assert sample(registry, "addrbus_transport_frames_sent_total", ns) == 7
    assert sample(registry, "addrbus_transport_pending", ns) == 2
    assert sample(registry, "addrbus_transport_odd_key_total", ns) == 1
    found = families(registry)
    assert found["addrbus_transport_frames_sent"].type == "counter"
    assert found["addrbus_transport_pending"].type == "gauge"


async def test_sealed_buses_report_the_crypto_counters(registry: CollectorRegistry, ns: str,
                                                       address: str) -> None:
    key = generate_key()
    hub = f"memory://{unique('hub')}?serialize=1"  # frames are bytes, so they are sealed
    server, client = EventBus(hub, namespace=ns, shared_key=key), EventBus(hub, namespace=ns, shared_key=key)
    register(client, registry)
    server.on(address, lambda body: body)
    async with server, client:
        await client.wait_for_handlers(address, timeout=WAIT)
        assert await client.request(address, 5, timeout=WAIT) == 5
        assert sample(registry, "addrbus_known_nodes", ns) == 2
        stats = client.stats()
        opened = sample(registry, "addrbus_frames_opened_total", ns)
        assert opened is not None and opened >= 1
        assert opened <= stats["crypto.opened"]
        assert sample(registry, "addrbus_crypto_remembered_tokens", ns) is not None
        for reason in ("too_large", "cleartext", "malformed", "invalid", "expired", "future", "replay"):
            assert sample(registry, "addrbus_frames_rejected_total", ns, reason=reason) == 0, reason
        assert sample(registry, "addrbus_frames_received_total", ns) == client.stats()["frames.received"]
        assert sample(registry, f"{DURATION}_count", ns, address=address) == 1
        assert sample(registry, "addrbus_handlers", ns, address=address) is None  # on the other node


async def test_the_default_registry_when_none_is_given(make_bus: Callable[..., EventBus], ns: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    collector = register(bus)
    try:
        assert collector.registry is REGISTRY
        assert REGISTRY.get_sample_value("addrbus_up", {"namespace": ns}) == 0
    finally:
        collector.unregister()
    assert REGISTRY.get_sample_value("addrbus_up", {"namespace": ns}) is None


async def test_one_registry_holds_one_bus(make_bus: Callable[..., EventBus], registry: CollectorRegistry,
                                          ns: str) -> None:
    bus, other = make_bus("memory://", namespace=ns), make_bus("memory://", namespace=ns)
    first = register(bus, registry)
    with pytest.raises(ConfigError, match="registered in this registry already") as raised:
        register(bus, registry)
    assert isinstance(raised.value, ValueError)  # what prometheus_client raised, too
    with pytest.raises(ConfigError, match="one bus per registry"):
        register(other, registry)
    with pytest.raises(ConfigError, match="registered already"):
        first.register(CollectorRegistry())
    assert len(bus._hooks.installed) == 1 and other._hooks.installed == []  # nothing left behind
    first.unregister()
    register(other, registry)  # room again

    mine = CollectorRegistry()
    Counter("addrbus_sent", "the application's own", registry=mine)
    with pytest.raises(ConfigError, match="already has metrics"):
        register(bus, mine)
    assert bus._hooks.installed == []


def test_arguments_are_checked() -> None:
    bus = EventBus("memory://")
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="max_addresses"):
            register(bus, CollectorRegistry(), max_addresses=bad)  # type: ignore[arg-type]
    for buckets in ([], [2.0, 1.0], [1.0, 1.0], [math.nan], ["x"], [math.inf]):
        with pytest.raises(ConfigError, match="buckets"):
            register(bus, CollectorRegistry(), buckets=buckets)  # type: ignore[arg-type]
    assert isinstance(BusCollector(bus, max_addresses=1), BusCollector)
    assert bus._hooks.installed == []


async def test_served_over_http(make_bus: Callable[..., EventBus], registry: CollectorRegistry, ns: str,
                                address: str) -> None:
    bus = make_bus("memory://", namespace=ns)
    register(bus, registry)
    bus.on(address, lambda body: body)
    await bus.start()
    await bus.request(address, 1, timeout=WAIT)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=WAIT) as response:
                return str(response.read().decode("utf-8"))

        text = await asyncio.to_thread(scrape)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
    found = {family.name: family for family in text_string_to_metric_families(text)}
    assert found["addrbus_up"].samples[0].value == 1
    assert found["addrbus_requests"].samples[0].value == 1
    counts = [s for s in found[DURATION].samples if s.name.endswith("_count")]
    assert [(s.labels["address"], s.value) for s in counts] == [(address, 1)]
