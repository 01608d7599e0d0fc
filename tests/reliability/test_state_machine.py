"""Scenario 8: a Hypothesis state machine over two buses whose links can be cut.

Two buses share ``lossymem://HUB?serialize=1`` (every frame serialised, as on a
network); each link can be cut and restored. Rules: subscribe, unregister,
publish, request (answered at once, or held until ``release``), cancel a
request, let time pass (held requests time out), cut and restore a link.

Invariants, after every step:

* no handler runs for a message after it was unregistered;
* no handler runs twice for one message (at-most-once);
* each bus's ``stats()["pending_requests"]`` equals its outstanding requests;
* a reply always belongs to its request.

At teardown every request must have resolved (reply, error or cancellation)
once links are restored and held handlers released, within its timeout plus
a margin. The machine runs each step on one event loop made in ``__init__``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, precondition, rule

from addrbus import EventBus, NoHandlers, ReplyError, RequestTimeout
from tests.conftest import unique
from tests.reliability import _lossy
from tests.reliability._measure import Clock, Record, Scale, settle, time_limit

T = TypeVar("T")
NODES = ("a", "b")
ADDRESSES = ("x", "y")
TIMEOUT = 0.05  # seconds: requests held or lost resolve by timing out this soon
MAX_OUTSTANDING = 20  # under the handlers' concurrency (64): nothing waits in a backlog between steps

TOTALS: collections.Counter[str] = collections.Counter()


class BusMachine(RuleBasedStateMachine):
    regs = Bundle("regs")
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        hub, namespace = unique("hub"), unique("ns")
        self.buses: dict[str, EventBus] = {}
        self.links: dict[str, _lossy.LinkMemoryTransport] = {}
        for node in NODES:
            link = unique("link")
            self.buses[node] = EventBus(f"lossymem://{hub}?serialize=1&link={link}", namespace=namespace)
            self.links[node] = _lossy.LINKS.pop(link)
        self.active: dict[int, bool] = {}
        self.registrations: dict[int, Any] = {}
        self.runs: collections.Counter[tuple[int, int]] = collections.Counter()
        self.violations: list[str] = []
        self.tasks: dict[int, tuple[str, asyncio.Task[str]]] = {}
        self.gate = asyncio.Event()
        self.keys = 0
        self.n_regs = 0
        for bus in self.buses.values():
            self.run(bus.start())
        TOTALS["examples"] += 1

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step's coroutine, then let the loop settle."""

        async def step() -> T:
            result = await coro
            await settle()
            return result

        return self.loop.run_until_complete(step())

    def key(self) -> int:
        self.keys += 1
        return self.keys

    # -- rules -----------------------------------------------------------------------------------

    @initialize(target=regs, node=st.sampled_from(NODES), address=st.sampled_from(ADDRESSES))
    def first_subscriber(self, node: str, address: str) -> int:
        return self._subscribe(node, address)

    @initialize(target=regs, node=st.sampled_from(NODES), address=st.sampled_from(ADDRESSES))
    def second_subscriber(self, node: str, address: str) -> int:
        return self._subscribe(node, address)

    @rule(target=regs, node=st.sampled_from(NODES), address=st.sampled_from(ADDRESSES))
    def subscribe(self, node: str, address: str) -> int:
        return self._subscribe(node, address)

    def _subscribe(self, node: str, address: str) -> int:
        self.n_regs += 1
        rid = self.n_regs

        async def handle(body: dict[str, Any]) -> int:
            key = int(body["k"])
            if not self.active[rid]:
                self.violations.append(f"handler {rid} ran for message {key} after unregister")
            self.runs[(rid, key)] += 1
            if self.runs[(rid, key)] > 1:
                self.violations.append(f"handler {rid} ran {self.runs[(rid, key)]} times for message {key}")
            TOTALS["deliveries"] += 1
            if body.get("hold"):
                await self.gate.wait()
            return key

        async def register() -> None:
            # On the loop: a running bus announces the change from there.
            self.registrations[rid] = self.buses[node].on(address, handle)
            self.active[rid] = True

        self.run(register())
        return rid

    @rule(rid=consumes(regs))
    def unregister(self, rid: int) -> None:
        async def unregister() -> None:
            self.active[rid] = False
            self.registrations[rid].unregister()

        self.run(unregister())

    @rule(node=st.sampled_from(NODES), address=st.sampled_from(ADDRESSES))
    def publish(self, node: str, address: str) -> None:
        TOTALS["publishes"] += 1
        self.run(self.buses[node].publish(address, {"k": self.key()}))

    @precondition(lambda self: sum(not t.done() for _, t in self.tasks.values()) < MAX_OUTSTANDING)
    @rule(target=requests, node=st.sampled_from(NODES), address=st.sampled_from(ADDRESSES), hold=st.booleans())
    def request(self, node: str, address: str, hold: bool) -> int:
        key = self.key()
        bus = self.buses[node]

        async def ask() -> str:
            TOTALS["requests"] += 1
            try:
                reply = await bus.request(address, {"k": key, "hold": hold}, timeout=TIMEOUT)
            except RequestTimeout:
                return "timeout"
            except NoHandlers:
                return "no_handlers"
            except ReplyError as exc:
                return f"failed:{type(exc).__name__}"
            if reply != key:
                self.violations.append(f"request {key} got the reply {reply!r}")
            return "ok"

        self.tasks[key] = (node, self.loop.create_task(ask()))
        self.run(settle())
        return key

    @rule(key=requests)
    def cancel(self, key: int) -> None:
        task = self.tasks[key][1]
        if not task.done():
            TOTALS["cancelled"] += 1
            task.cancel()
        self.run(settle())

    @rule()
    def release(self) -> None:
        self.gate.set()
        self.gate = asyncio.Event()
        self.run(settle())

    @precondition(lambda self: any(not t.done() for _, t in self.tasks.values()))
    @rule()
    def let_time_pass(self) -> None:
        self.run(asyncio.sleep(TIMEOUT * 1.5))

    @rule(node=st.sampled_from(NODES))
    def cut(self, node: str) -> None:
        TOTALS["cuts"] += 1
        self.links[node].down = True

    @rule(node=st.sampled_from(NODES))
    def restore(self, node: str) -> None:
        self.links[node].down = False

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def nothing_wrong_happened(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def pending_map_matches_outstanding_requests(self) -> None:
        for node, bus in self.buses.items():
            outstanding = sum(1 for n, t in self.tasks.values() if n == node and not t.done())
            assert bus.stats()["pending_requests"] == outstanding, (node, bus.stats(), outstanding)

    def teardown(self) -> None:
        try:
            for link in self.links.values():
                link.down = False
            self.gate.set()
            tasks = [t for _, t in self.tasks.values()]
            if tasks:
                # Lost requests resolve by their timeout: wait that long, and a margin, no more.
                _, late = self.loop.run_until_complete(asyncio.wait(tasks, timeout=TIMEOUT + 1.0))
                assert not late, f"{len(late)} request(s) never resolved"
                for task in tasks:
                    TOTALS["resolved." + ("cancelled" if task.cancelled() else task.result())] += 1
            for bus in self.buses.values():
                assert bus.stats()["pending_requests"] == 0, bus.stats()
            assert not self.violations, self.violations
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            for bus in self.buses.values():
                self.loop.run_until_complete(bus.stop())
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()


@time_limit(short=60, full=600)
@pytest.mark.usefixtures("fault_schemes")
def test_bus_state_machine(record: Any, scale: Scale) -> None:
    examples, steps = scale.pick((100, 30), (2_000, 60))
    rec: Record = record("8-state-machine", "memory", examples=examples, steps=steps, timeout=TIMEOUT,
                         url="lossymem://?serialize=1 (link cut/restore)")
    TOTALS.clear()
    clock = Clock()
    run = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    try:
        BusMachine.TestCase.settings = run
        BusMachine.TestCase().runTest()
    finally:
        rec.seconds = round(clock(), 2)
        rec.sent = TOTALS["requests"]
        rec.ok = TOTALS["resolved.ok"]
        rec.timeout = TOTALS["resolved.timeout"]
        rec.no_handlers = TOTALS["resolved.no_handlers"]
        rec.failed = sum(v for k, v in TOTALS.items() if k.startswith("resolved.failed"))
        rec.extra.update(dict(TOTALS))
    rec.expect("examples_run", TOTALS["examples"], ">=", 1)
    rec.expect("all_requests_resolved", sum(v for k, v in TOTALS.items() if k.startswith("resolved.")),
               "==", TOTALS["requests"])
    rec.assert_ok()
