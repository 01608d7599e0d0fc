"""Bad input changes nothing: junk from a non-bus is counted, logged once, and never handled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from addrbus import EventBus
from addrbus._wire.envelope import Envelope
from addrbus._wire.sealing import generate_key
from addrbus.transports.memory import _hubs
from tests.conftest import unique
from tests.security._harness import (
    FAKE_NODE,
    WAIT,
    MemoryNet,
    Net,
    UdpNet,
    counted,
    eventually,
    new_id,
    progressed,
)
from tests.security._junk import JUNK_CANARY, Item, catalogue

LEGIT = 1000


class Received(list[Item]):
    """The consumer under attack: an async handler typed ``Item``."""

    async def handler(self, item: Item) -> None:
        self.append(item)


def _total(counts: dict[str, int]) -> int:
    return sum(counts.values())


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "sealed"])
async def test_each_kind_of_junk_is_counted_under_its_reason(
    make_bus: Callable[..., EventBus], address: str, caplog: pytest.LogCaptureFixture, encrypted: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="addrbus")
    net = MemoryNet()
    key = generate_key() if encrypted else None
    bus = make_bus(net.url(), namespace=unique("ns"), shared_key=key)
    got = Received()
    bus.on(address, got.handler)
    await bus.start()
    problems: list[str] = []
    for junk in catalogue(bus.namespace, address, key, net.max_payload):
        before = counted(bus)
        await net.inject(bus, junk.payload)
        try:
            await eventually(progressed(bus, got, before), junk.label, 2.0)
        except AssertionError:
            problems.append(f"{junk.label}: neither handled nor counted")
            continue
        await asyncio.sleep(0)  # a second count, if any, would land now
        after = counted(bus)
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        if got:
            problems.append(f"{junk.label}: reached the handler as {got[0]!r}")
            got.clear()
        elif list(delta.values()) != [1] or not delta.keys() <= junk.reasons:
            problems.append(f"{junk.label}: counted as {delta}, expected one of {sorted(junk.reasons)}")
    assert not problems, "\n".join(problems)
    assert_quiet_logs(caplog, buses=1)


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "sealed"])
async def test_junk_interleaved_with_legit_traffic_changes_nothing(
    net: Net,
    make_bus: Callable[..., EventBus],
    address: str,
    caplog: pytest.LogCaptureFixture,
    encrypted: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="addrbus")
    key = generate_key() if encrypted else None
    namespace = unique("ns")
    receiver = make_bus(net.url(), namespace=namespace, shared_key=key, startup_wait=0.05)
    sender = make_bus(net.url(), namespace=namespace, shared_key=key, startup_wait=0.05)
    got = Received()
    receiver.on(address, got.handler)
    await receiver.start()
    await sender.start()
    await sender.wait_for_handlers(address, 1, timeout=WAIT)
    junk = catalogue(namespace, address, key, net.max_payload)
    assert len(junk) < LEGIT
    before = counted(receiver)
    started = time.monotonic()
    for i in range(LEGIT):
        await sender.publish(address, Item(n=i))
        if i < len(junk):
            # Alternately to the whole namespace and to the receiver alone.
            await net.inject(receiver, junk[i].payload, direct=bool(i % 2))
        if i % 8 == 0:
            await asyncio.sleep(0)  # let the receiver drain its socket as a busy peer would
    # Every frame ends up somewhere: handled (legit, or junk that got through) or counted.
    def settled() -> bool:
        return len(got) + _total(counted(receiver)) - _total(before) >= LEGIT + len(junk)

    await eventually(settled, "every frame handled or counted")
    through = [item.n for item in got if item.n < 0]
    assert not through, f"{len(through)} junk frames reached the handler"
    numbers = [item.n for item in got]
    if isinstance(net, UdpNet):
        numbers.sort()  # datagrams may be reordered; none may be lost on lo
    assert numbers == list(range(LEGIT)), "a legit message was lost"
    after = counted(receiver)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert _total(delta) == len(junk)
    allowed = frozenset().union(*(j.reasons for j in junk))
    assert delta.keys() <= allowed, f"unexpected reasons: {delta.keys() - allowed}"
    # Both buses heard the junk sent to the whole namespace: one line per reason per bus at most.
    assert time.monotonic() - started < 10
    assert_quiet_logs(caplog, buses=2)


def assert_quiet_logs(caplog: pytest.LogCaptureFixture, buses: int) -> None:
    """Check that each drop reason was logged at most once per bus, and no junk content at all."""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("addrbus")]
    per_reason: dict[str, int] = {}
    for line in lines:
        if line.startswith("dropped a received frame: "):
            reason = line.split(": ", 1)[1].split(" ", 1)[0]
        elif "failed validation" in line:
            reason = "invalid_body"
        else:
            continue
        per_reason[reason] = per_reason.get(reason, 0) + 1
    assert per_reason, "no drop was logged"
    assert all(n <= buses for n in per_reason.values()), per_reason
    for record in caplog.records:
        assert JUNK_CANARY not in record.getMessage()
        assert JUNK_CANARY not in repr(record.args)


async def test_memory_hub_member_refuses_raw_objects(make_bus: Callable[..., EventBus], address: str) -> None:
    # A hub without serialize=1 passes Envelope objects: anything else handed to a member is refused.
    hub, namespace = unique("hub"), unique("ns")
    bus = make_bus(f"memory://{hub}", namespace=namespace)
    got = Received()
    bus.on(address, got.handler)
    await bus.start()
    member = _hubs[hub].nodes[namespace][bus.node_id]

    class Sneaky(Envelope):
        pass

    def env(**fields: Any) -> Envelope:
        base: dict[str, Any] = {"kind": "pub", "ns": namespace, "addr": address, "id": new_id(), "src": FAKE_NODE}
        base.update(fields)
        envelope = Envelope(**base)
        envelope.body = Item(n=-1)
        return envelope

    cases: list[tuple[str, Any, set[str]]] = [
        ("bytes", b"AB{}\nnull", {"not_an_envelope"}),
        ("str", JUNK_CANARY, {"not_an_envelope"}),
        ("none", None, {"not_an_envelope"}),
        ("int", 10**100, {"not_an_envelope"}),
        ("dict", {"kind": "pub", "ns": namespace, "addr": address, "body": {"n": -1}}, {"not_an_envelope"}),
        ("subclass", Sneaky(kind="pub", ns=namespace, addr=address, id=new_id()), {"not_an_envelope"}),
        ("other-namespace", env(ns=namespace + ".x"), {"other_namespace"}),
        ("another-node", env(dst="f" * 16), {"not_for_us"}),
        ("version-2", env(v=2), {"bad_version"}),
        ("control-character-address", env(addr=f"{address}\x00"), {"bad_address"}),
        ("huge-header-set", env(hdr={f"h{i}": "" for i in range(3000)}), {"bad_headers"}),
        ("invalid-body", env(id=new_id()), {"invalid_body"}),
    ]
    cases[-1][1].body = {"n": JUNK_CANARY}
    problems = []
    for label, obj, reasons in cases:
        before = counted(bus)
        member(obj)
        try:
            await eventually(progressed(bus, got, before), label, 2.0)
        except AssertionError:
            problems.append(f"{label}: neither handled nor counted")
            continue
        delta = {k: v - before.get(k, 0) for k, v in counted(bus).items() if v != before.get(k, 0)}
        if got:
            problems.append(f"{label}: reached the handler")
            got.clear()
        elif list(delta.values()) != [1] or not delta.keys() <= reasons:
            problems.append(f"{label}: counted as {delta}, expected {sorted(reasons)}")
    member(env())
    await eventually(lambda: len(got) == 1, "a legit envelope")
    assert not problems, "\n".join(problems)


def test_every_junk_kind_is_in_the_catalogue() -> None:
    # The issue's list, mapped to catalogue labels: a guard against quietly dropping a kind.
    labels = {j.label.split("-")[0] for j in catalogue("ns", "a", None, 65_000)}
    sealed = {j.label.split("-")[0] for j in catalogue("ns", "a", generate_key(), 65_000)}
    for kind in ("random", "truncated", "non", "json", "deep", "huge", "version", "oversized", "body",
                 "address", "headers", "header"):
        assert kind in labels
    for kind in ("tampered", "wrong", "token", "expired", "from", "cleartext", "truncated"):
        assert kind in sealed
