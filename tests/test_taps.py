"""Taps (``bus.stream(a, tap=True)``, ``addrbus listen``): a copy of every message, never a consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from addrbus import EventBus, NoHandlers
from addrbus._patterns import TAP_PREFIX
from addrbus._wire.envelope import MAX_HEADERS
from tests.conftest import unique

WAIT = 5.0


async def test_a_tap_sees_every_publish_send_and_request_and_is_never_chosen(
        make_bus: Callable[..., EventBus]) -> None:
    hub = unique("hub")
    service, client, watcher = (make_bus(f"memory://{hub}") for _ in range(3))

    @service.on("orders.create")
    async def create(n: int) -> int:
        return n + 1

    async with service, client, watcher, watcher.stream("orders.create", tap=True) as tap:
        await client.wait_for_handlers(TAP_PREFIX + "orders.create", timeout=WAIT)
        assert client.consumers() == {"orders.create": 1}
        assert [await client.request("orders.create", n, timeout=WAIT) for n in range(20)] == list(range(1, 21))
        await client.send("orders.create", 100, headers={"who": "me"})
        await client.publish("orders.create", 200)
        seen = [await tap.get(timeout=WAIT) for _ in range(22)]
    assert [(m.headers["addrbus-tap"], m.body) for m in seen] == [
        *(("request", n) for n in range(20)), ("send", 100), ("publish", 200)]
    assert {m.address for m in seen} == {"orders.create"}
    assert seen[20].headers["who"] == "me"
    assert not any(m.is_request for m in seen)  # a copy cannot be answered


async def test_a_tap_on_a_pattern_and_a_tap_alone(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    @bus.on("sensors.heat")
    async def heat(n: int) -> None:
        return None

    async with bus, bus.stream("sensors.*", tap=True) as tap:
        await bus.publish("sensors.heat", 1)
        await bus.send("sensors.heat", 2)
        got = [await tap.get(timeout=WAIT) for _ in range(2)]
        assert [(m.address, m.body) for m in got] == [("sensors.heat", 1), ("sensors.heat", 2)]
        # A tap alone consumes nothing: a send to nobody still fails, and the tap still sees it.
        with pytest.raises(NoHandlers):
            await bus.send("sensors.cold", 3)
        assert (await tap.get(timeout=WAIT)).body == 3


async def test_a_bus_without_taps_publishes_no_copies(make_bus: Callable[..., EventBus]) -> None:
    hub = unique("hub")
    a, b = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    async with a, b:
        async with b.stream("x", tap=True):
            await a.wait_for_handlers(TAP_PREFIX + "x", timeout=WAIT)
            await a.publish("x", 1)
        await a.wait_for_handlers(TAP_PREFIX + "x", 0, exactly=True, timeout=WAIT)
        published = a.stats()["published"]
        await a.publish("x", 2)
        assert a.stats()["published"] == published + 1  # the publish itself, no copy
        assert not a._router.taps


async def test_a_copy_that_cannot_be_sent_never_fails_the_call(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    @bus.on("full")
    async def handler(n: int) -> int:
        return n

    full = {f"h{i}": "v" for i in range(MAX_HEADERS)}  # room for no tap header
    async with bus, bus.stream("full", tap=True):
        assert await bus.request("full", 7, headers=full, timeout=WAIT) == 7
    assert bus.stats()["dropped.tap"] == 1


def test_a_tap_cannot_be_in_a_group_nor_registered_by_hand() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="group"):
        bus.stream("a", tap=True, group="g")
    with pytest.raises(ValueError, match="bus's own"):
        bus.on(TAP_PREFIX + "a", lambda body: body)


async def test_a_tap_and_a_consumer_on_one_bus(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    async with bus, bus.stream("jobs", tap=True) as tap, bus.stream("jobs") as consumer:
        await bus.send("jobs", "one")
        assert (await consumer.get(timeout=WAIT)).body == "one"
        assert (await tap.get(timeout=WAIT)).body == "one"
        await asyncio.wait_for(bus.drain(), WAIT)
