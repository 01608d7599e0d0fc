"""Address patterns: what a pattern matches, and the addresses refused at the call."""

from __future__ import annotations

import asyncio

import pytest

from addrbus import EventBus
from addrbus._core.routing import MAX_PATTERNS, Router
from addrbus._patterns import check_registered, is_pattern, matches
from tests.conftest import unique

WAIT = 5.0


@pytest.mark.parametrize(("pattern", "address", "hit"), [
    ("sensors.*", "sensors.kitchen", True),
    ("sensors.*", "sensors.kitchen.temp", False),
    ("sensors.*", "sensors", False),
    ("sensors.>", "sensors.kitchen", True),
    ("sensors.>", "sensors.kitchen.temp", True),
    ("sensors.>", "sensors", False),
    ("*.temp", "hall.temp", True),
    ("*.temp", "hall.hum", False),
    ("*.*", "a.b", True),
    (">", "anything.at.all", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.b.d", False),
])
def test_what_a_pattern_matches(pattern: str, address: str, hit: bool) -> None:
    assert matches(tuple(pattern.split(".")), address.split(".")) is hit


@pytest.mark.parametrize("bad", ["a..*", "*..b", ">.a", "a.>.b", "a*", "a.b*", "a.>b", "sensors.*x", ".*", "*."])
async def test_malformed_patterns_are_refused_at_registration(bad: str) -> None:
    bus = EventBus()

    async def handle(n: int) -> None:
        return None

    with pytest.raises(ValueError, match="pattern|token"):
        bus.on(bad, handle)
    with pytest.raises(ValueError, match="pattern|token"):
        bus.consumer(bad)
    with pytest.raises(ValueError, match="pattern|token"):
        bus.stream(bad)
    async with bus:
        with pytest.raises(ValueError, match="pattern|token"):
            await bus.wait_for(bad, timeout=WAIT)


def test_plain_addresses_stay_as_they_were() -> None:
    # An exact address keeps any characters it had: empty tokens are an error only in a pattern.
    for plain in ("a..b", "orders.created", "x", "a b", "ünïcode.addr"):
        assert check_registered(plain) == plain and not is_pattern(plain)


async def test_a_pattern_consumer_hears_the_concrete_address_and_unregisters() -> None:
    bus = EventBus()
    base = unique("p")
    async with bus:
        async with bus.stream(f"{base}.*", int) as messages:
            await bus.publish(f"{base}.one", 1)
            await bus.publish(f"{base}.one.two", 2)  # not one token: not for "*"
            await bus.send(f"{base}.three", 3)
            first, second = await messages.get(timeout=WAIT), await messages.get(timeout=WAIT)
            assert [(m.address, m.body) for m in (first, second)] == [(f"{base}.one", 1), (f"{base}.three", 3)]
        assert bus.consumers() == {}


async def test_wait_for_takes_a_pattern() -> None:
    bus = EventBus()
    base = unique("w")
    async with bus:
        waiting = asyncio.ensure_future(bus.wait_for(f"{base}.>", timeout=WAIT, where=lambda m: m.body == 2))
        await bus.wait_for_handlers(f"{base}.x.y", 1, timeout=WAIT)
        await bus.publish(f"{base}.x", 1)
        await bus.publish(f"{base}.x.y", 2)
        msg = await waiting
        assert (msg.address, msg.body) == (f"{base}.x.y", 2)


def test_patterns_from_other_nodes_are_capped() -> None:
    router = Router()
    router.set_node("a" * 16, {f"p{i}.*": 1 for i in range(MAX_PATTERNS + 50)})
    assert len(router.patterns) == MAX_PATTERNS  # each new address is matched against these, no more
    some = next(iter(router.patterns))  # which ones are held depends on set order
    assert router.matching(some.replace("*", "x")) == (some,)
    router.remove_node("a" * 16)
    assert router.patterns == {}
