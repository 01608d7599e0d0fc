"""Errors that diagnose: NoHandlers says where it looked and what it knows; frames that fail to open say why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from addrbus import EventBus, NoHandlers, generate_key
from tests.conftest import unique

WAIT = 5.0


async def test_no_handlers_names_the_transport_namespace_nodes_and_close_names(
        make_bus: Callable[..., EventBus]) -> None:
    hub = unique("hub")
    service, client = make_bus(f"memory://{hub}", namespace="shop"), make_bus(f"memory://{hub}", namespace="shop")

    @service.on("orders.create")
    async def create(n: int) -> int:
        return n

    async with service, client:
        await client.wait_for_handlers("orders.create", timeout=WAIT)
        with pytest.raises(NoHandlers) as typo:
            await client.request("orders.creat", 1, timeout=WAIT)
        with pytest.raises(NoHandlers) as far:
            await client.send("billing.refund", 1)
        with pytest.raises(NoHandlers) as there:
            await client.request("orders.creat", 1, node=service.node_id, timeout=WAIT)
    text = str(typo.value)
    assert f"memory://{hub}" in text and "namespace 'shop'" in text
    assert "knows 1 other node" in text
    assert "did you mean 'orders.create'?" in text
    assert "did you mean" not in str(far.value)  # nothing close: no guess
    assert f"node {service.node_id} has no handlers" in str(there.value)


async def test_no_handlers_with_no_other_node_says_what_to_check(make_bus: Callable[..., EventBus]) -> None:
    alone = make_bus(f"memory://{unique('hub')}")
    async with alone:
        with pytest.raises(NoHandlers, match="knows no other node: is the service running, on the same URL and"
                                             " namespace, with the same shared_key"):
            await alone.publish("audit", 1, require_handlers=True)


async def test_wait_for_handlers_says_which_address_and_how_many(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    bus.on("jobs", lambda body: None)
    async with bus:
        with pytest.raises(TimeoutError, match=r"waited 0.05 s for at least 2 handler\(s\) of 'jobs': saw 1"):
            await bus.wait_for_handlers("jobs", 2, timeout=0.05)
        with pytest.raises(TimeoutError, match=r"for exactly 0 handler\(s\) of 'jobs': saw 1"):
            await bus.wait_for_handlers("jobs", 0, exactly=True, timeout=0.05)


@pytest.mark.parametrize(("keys", "hints"), [
    ((True, True), ("could not be opened with this bus's shared_key (different key?)",)),
    # One bus sealed, one not: which one hears the other depends on the engine (interest keys are keyed
    # digests) and the start order; whichever hears says what it likely means.
    ((True, False), ("not sealed, and this bus has a shared_key (the sender has none?)",
                     "sealed and this bus has no shared_key (the sender has one?)")),
])
async def test_a_frame_that_does_not_open_is_logged_with_what_it_likely_means(
        make_bus: Callable[..., EventBus], caplog: pytest.LogCaptureFixture, keys: tuple[bool, bool],
        hints: tuple[str, ...]) -> None:
    hub = unique("hub")
    first_key, second_key = (generate_key() if has else None for has in keys)
    url = f"memory://{hub}?serialize=1"  # frames as bytes, as on the network
    first, second = make_bus(url, shared_key=first_key), make_bus(url, shared_key=second_key)

    def told() -> bool:
        return any(hint in record.getMessage() for record in caplog.records for hint in hints)

    with caplog.at_level(logging.WARNING, logger="addrbus"):
        async with first, second:
            await first.publish("anything", 1)  # membership frames go too; any is enough
            for _ in range(500):  # bounded: a few loop turns carry the frames over the hub
                if told():
                    break
                await asyncio.sleep(0.01)
    assert told(), [r.getMessage() for r in caplog.records]
