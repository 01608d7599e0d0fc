"""docs/monitoring.md documents every key that ``bus.stats()`` can return.

Two checks: what a bus reports after publishes, sends, requests and their failures
(a memory:// bus, and two sealed buses on one hub); and what the source can count
(every literal counter name, every f-string one built from ``FailureType`` or a drop
reason, every transport counter and every sealer counter).
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from addrbus import BusStopped, EventBus, FailureType, NoHandlers, RecipientFailure, RequestTimeout, generate_key
from addrbus._counters import Counters
from addrbus._wire.sealing import Sealer
from tests.conftest import unique

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "monitoring.md"
SRC = ROOT / "src" / "addrbus"
WAIT = 5.0


def documented() -> set[str]:
    """Return every `key` written in backticks in the monitoring page."""
    return set(re.findall(r"`([^`\s]+)`", DOC.read_text(encoding="utf-8")))


def missing(keys: set[str]) -> list[str]:
    return sorted(keys - documented())


def trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(SRC.rglob("*.py"))]


# -- what a bus reports --------------------------------------------------------------------------


async def exercise(bus: EventBus, client: EventBus, address: str) -> None:
    """Publish, send and request through ``client`` to ``bus``'s handlers, with every common failure."""
    release = asyncio.Event()
    entered: dict[int, asyncio.Event] = {8: asyncio.Event(), 9: asyncio.Event()}

    @bus.on(f"{address}.echo")
    async def echo(body: Any) -> Any:
        return body

    @bus.on(f"{address}.typed")
    async def typed(n: int) -> int:
        return n

    @bus.on(f"{address}.boom")
    async def boom(body: Any) -> None:
        raise ValueError("boom")

    @bus.on(f"{address}.slow")
    async def slow(n: int) -> None:
        entered[n].set()
        await release.wait()

    await bus.start()
    if client is not bus:
        await client.start()
    for name in ("echo", "typed", "boom", "slow"):
        await client.wait_for_handlers(f"{address}.{name}", 1, timeout=WAIT)
    try:
        await client.publish(f"{address}.echo", 1)
        await client.send(f"{address}.echo", 2)
        assert await client.request(f"{address}.echo", 3, timeout=WAIT) == 3
        await client.publish(f"{address}.nobody", 4)
        with pytest.raises(NoHandlers):
            await client.request(f"{address}.nobody", 5, timeout=WAIT)
        with pytest.raises(NoHandlers):
            await client.publish(f"{address}.nobody", 6, require_handlers=True)
        with pytest.raises(RecipientFailure):
            await client.request(f"{address}.boom", 7, timeout=WAIT)
        with pytest.raises(RecipientFailure):
            await client.request(f"{address}.typed", "not a number", timeout=WAIT)
        with pytest.raises(RequestTimeout):
            await client.request(f"{address}.slow", 8, timeout=0.05)
        # A second call of the slow handler holds this request until the requesting bus stops.
        waiting = asyncio.ensure_future(client.request(f"{address}.slow", 9, timeout=WAIT))
        await asyncio.wait_for(entered[9].wait(), WAIT)
        stopping = asyncio.ensure_future(client.stop())
        with pytest.raises(BusStopped):
            await asyncio.wait_for(waiting, WAIT)
        release.set()
        await asyncio.wait_for(stopping, WAIT)
        assert await bus.drain(WAIT)
    finally:
        release.set()
        await client.stop()
        await bus.stop()


async def test_every_key_of_a_memory_bus_is_documented(address: str) -> None:
    bus = EventBus("memory://")
    await exercise(bus, bus, address)
    stats = bus.stats()
    for key in ("failures.handler", "failures.invalid_body", "failures.no_handlers", "failures.timeout",
                "failures.recipient_failure", "failures.stopped"):
        assert stats.get(key, 0) >= 1, (key, stats)
    assert not any(key.startswith("crypto.") for key in stats)
    assert missing(set(stats)) == []


async def test_every_key_of_sealed_buses_is_documented(address: str) -> None:
    key = generate_key()
    hub = f"memory://{unique('hub')}?serialize=1"  # frames are bytes, so they are sealed
    server = EventBus(hub, shared_key=key)
    client = EventBus(hub, shared_key=key)
    await exercise(server, client, address)
    for bus in (server, client):
        stats = bus.stats()
        assert stats["crypto.opened"] >= 1, stats
        assert stats["frames.received"] >= 1, stats
        assert missing(set(stats)) == []
    assert client.stats()["failures.timeout"] == 1
    assert server.stats()["failures.handler"] == 1


# -- what the source can count -------------------------------------------------------------------


def count_calls() -> list[tuple[Path, ast.Call]]:
    """Return every ``x.count(...)`` and ``self._count(...)`` call with one argument, outside the job scheduler.

    Jobs (``_jobs``) count ``runs``, ``failures``... on the ``Job`` object, not in ``bus.stats()``.
    """
    return [(path, node) for path, tree in trees() if "_jobs" not in path.parts for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("count", "_count") and len(node.args) == 1]


def literal_counter_names() -> set[str]:
    return {call.args[0].value for _, call in count_calls()
            if isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)}


def test_every_literal_counter_name_is_documented() -> None:
    names = literal_counter_names()
    assert {"failures.handler", "dropped.overflow", "dropped.late_reply", "dropped.answer_rate"} <= names
    assert missing(names) == []


def test_the_per_message_counters_are_documented() -> None:
    keys = set(Counters().snapshot()) | {"pending_requests"}
    assert "frames.received" in keys
    assert missing(keys) == []


def prefixes_of_built_names() -> set[str]:
    """Return the constant start of every counter name built with an f-string (``f"dropped.{...}"``)."""
    found = set()
    for path, call in count_calls():
        arg = call.args[0]
        if isinstance(arg, ast.JoinedStr):
            head = arg.values[0]
            assert isinstance(head, ast.Constant), f"{path}:{call.lineno}: a counter name of unknown prefix"
            found.add(head.value)
    return found


def reasons() -> set[str]:
    """Return every reason a frame is dropped for: the literals of FrameError, Refused and Sealer._reject."""
    found = set()
    for _, tree in trees():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("FrameError", "Refused", "_reject") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def test_every_built_counter_name_is_documented() -> None:
    # Only these two families are built at run time; a new one needs this test (and the page) extended.
    assert prefixes_of_built_names() == {"failures.", "dropped."}
    failures = {f"failures.{member.value.lower()}" for member in FailureType}
    drops = {f"dropped.{reason}" for reason in reasons()}
    assert {"dropped.duplicate", "dropped.too_many_nodes", "dropped.replay"} <= drops
    assert missing(failures | drops) == []


def _strings(node: ast.expr) -> set[str]:
    """Return the strings of a tuple of literals, or of ``"a b c".split()``."""
    if isinstance(node, ast.Tuple | ast.List):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split"
            and not node.args):
        text = ast.literal_eval(node.func.value)
        return set(text.split()) if isinstance(text, str) else set()
    return set()


def stats_keys(path: Path) -> set[str]:
    """Return the keys a module's ``stats()`` can return: its ``_COUNTERS`` and the dict literal it returns."""
    keys: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_COUNTERS" for t in node.targets):
            keys |= _strings(node.value)
        if isinstance(node, ast.FunctionDef) and node.name == "stats":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Dict):
                    keys |= {k.value for k in inner.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


@pytest.mark.parametrize("path", ["transports/memory.py", *(f"transports/{name}/transport.py"
                                                             for name in ("udp", "redis", "nats", "mqtt"))])
def test_every_transport_counter_is_documented(path: str) -> None:
    keys = stats_keys(SRC / path)
    if "memory" not in path:
        assert {"frames_sent", "frames_received"} <= keys, keys
    assert missing({f"transport.{key}" for key in keys}) == []


def test_every_sealer_counter_is_documented() -> None:
    sealer = Sealer(generate_key())
    keys = set(sealer.stats())
    assert {"opened", "replay", "remembered"} <= keys
    assert missing({f"crypto.{key}" for key in keys}) == []
