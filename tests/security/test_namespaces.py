"""Namespaces: buses in different namespaces never exchange a message, on any transport."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from addrbus import EventBus, NoHandlers
from addrbus._wire.sealing import generate_key
from tests.conftest import unique
from tests.security._harness import WAIT, Net, Recorder, counted, eventually, frame, sealed

ADDRESSES = ("b.c", "c", "a.b.c")


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "sealed"])
async def test_namespaces_never_exchange_messages(
    net: Net, make_bus: Callable[..., EventBus], encrypted: bool
) -> None:
    # ("a", "b.c") and ("a.b", "c") would collide in a naive "ns.address" scheme.
    prefix = unique("ns")
    namespaces = (f"{prefix}a", f"{prefix}a.b")
    key = generate_key() if encrypted else None
    got: dict[tuple[str, str], Recorder] = {}
    pairs: dict[str, tuple[EventBus, EventBus]] = {}
    for ns in namespaces:
        consumer = make_bus(net.url(), namespace=ns, shared_key=key, startup_wait=0.05)
        producer = make_bus(net.url(), namespace=ns, shared_key=key, startup_wait=0.05)
        for address in ADDRESSES:
            got[ns, address] = Recorder()
            consumer.on(address, got[ns, address].handler)
        consumer.on("ping", lambda body: body)
        pairs[ns] = (consumer, producer)
    for consumer, producer in pairs.values():
        await consumer.start()
        await producer.start()
    for ns, (_, producer) in pairs.items():
        await producer.wait_for_handlers("ping", 1, timeout=WAIT)
        for address in ADDRESSES:
            await producer.publish(address, [ns, address])
        # A round trip after the publishes: they have been handled when it is back.
        assert await producer.request("ping", ns, timeout=WAIT) == ns
    await eventually(lambda: all(got.values()), "every delivery")
    for (ns, address), bodies in got.items():
        assert bodies == [[ns, address]], f"{ns!r}/{address!r} received {bodies}"
    for consumer, producer in pairs.values():
        # Membership never crossed either: each bus knows only its own namespace.
        assert set(consumer.nodes()) == {consumer.node_id, producer.node_id}
        assert set(producer.nodes()) == {consumer.node_id, producer.node_id}
        assert "dropped.other_namespace" not in consumer.stats()
    alone = make_bus(net.url(), namespace=f"{prefix}a.b.c", shared_key=key, startup_wait=0.05)
    await alone.start()
    with pytest.raises(NoHandlers):
        await alone.request("c", None, timeout=WAIT)


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "sealed"])
async def test_frame_of_another_namespace_is_dropped(
    net: Net, make_bus: Callable[..., EventBus], address: str, encrypted: bool
) -> None:
    # The transport's own namespace (UDP header, Redis channel) says "a"; the
    # envelope (inside the token, when sealed) says "a.b": the bus believes the envelope.
    prefix = unique("ns")
    key = generate_key() if encrypted else None
    bus = make_bus(net.url(), namespace=f"{prefix}a", shared_key=key, startup_wait=0.05)
    seen = Recorder()
    bus.on(address, seen.handler)
    await bus.start()

    def wrap(data: bytes) -> bytes:
        return sealed(key, data) if key else data

    await net.inject(bus, wrap(frame(f"{prefix}a.b", address, "foreign")))
    await net.inject(bus, wrap(frame(f"{prefix}a.b", address, "foreign", dst=bus.node_id)), direct=True)
    await net.inject(bus, wrap(frame(f"{prefix}a", address, "marker")))
    await eventually(lambda: seen == ["marker"], "the marker")
    assert counted(bus) == {"other_namespace": 2}
