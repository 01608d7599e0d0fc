"""The first hour, at start: a broker not up yet is waited for, and event-loop misuse says what to do.

A service started before its broker retries the transport for ``start_timeout``
seconds (capped, jittered backoff, one WARNING per failed attempt), then raises one
``TransportError``; ``stop()`` ends the retrying. ``bus.run()`` inside a running
loop, and a bus carried from one ``asyncio.run`` into the next, raise a ``BusError``
that names the fix, not asyncio's own error. Servers are private (``fault_*``
fixtures), killed before the bus starts; waits are bounded, on events.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from addrbus import BusError, BusStopped, ConfigError, EventBus, TransportError
from addrbus._core.node import Node
from addrbus._core.startup import MAX_DELAY, Startup
from addrbus.transports.base import FrameHandler, Transport
from tests.conftest import unique
from tests.fixtures_mqtt import Mosquitto
from tests.fixtures_nats import NatsServer
from tests.fixtures_redis import RedisServer

WAIT = 10.0  # a generous bound on anything that should take a fraction of it
MakeBus = Callable[..., EventBus]


class StartWarnings(logging.Handler):
    """The ``addrbus`` logger's WARNINGs about a failed start, with a bounded wait for the n-th."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("cannot start "):
            self.records.append(record)
            self._changed.set()

    @property
    def texts(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def warnings() -> AsyncIterator[StartWarnings]:
    logger = logging.getLogger("addrbus")
    handler = StartWarnings()
    logger.addHandler(handler)  # WARNING passes the logger's default level
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def start_after_the_first_warning(bus: EventBus, warnings: StartWarnings, server_start: Callable[[], None]
                                        ) -> None:
    """Start ``bus`` while its server is down; start the server once a failed attempt was logged."""
    starting = asyncio.create_task(bus.start())
    await warnings.wait_for(1)
    assert not starting.done() and not bus.running
    await asyncio.to_thread(server_start)  # returns once the server accepts clients
    await asyncio.wait_for(starting, WAIT)
    assert bus.running


async def assert_messages_flow(make_bus: MakeBus, url: str, bus: EventBus, namespace: str) -> None:
    address = unique("echo")
    peer = make_bus(url, namespace=namespace, startup_wait=0.05)
    peer.on(address, lambda n: n + 1)
    await peer.start()
    await bus.wait_for_handlers(address, 1, timeout=WAIT)
    assert await bus.request(address, 41, timeout=WAIT) == 42


# -- start_timeout: waiting for the broker -----------------------------------------------------


@pytest.mark.redis
async def test_a_bus_started_before_redis_waits_for_it(
        fault_redis: RedisServer, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_redis.kill()
    namespace = unique("ns")
    bus = make_bus(fault_redis.url + "?connect_timeout=1", namespace=namespace, startup_wait=0.05)
    await start_after_the_first_warning(bus, warnings, fault_redis.start)
    first = warnings.texts[0]
    # It names the transport (as describe() has it, no password), the attempt, the error, the retry.
    assert first.startswith(f"cannot start {bus.describe()} (attempt 1): cannot connect to ")
    assert "retrying in " in first and "(start_timeout=30 s)" in first
    assert all(record.levelno == logging.WARNING and record.name == "addrbus" for record in warnings.records)
    await assert_messages_flow(make_bus, fault_redis.url, bus, namespace)


@pytest.mark.redis
async def test_start_gives_up_at_start_timeout_with_one_error(
        fault_redis: RedisServer, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_redis.kill()
    bus = make_bus(fault_redis.url, start_timeout=0.5)
    began = time.monotonic()
    with pytest.raises(TransportError) as info:
        await bus.start()
    took = time.monotonic() - began
    assert 0.5 <= took < 0.5 + MAX_DELAY, f"gave up after {took:.2f} s"
    text = str(info.value)
    attempts = len(warnings.records) + 1  # every attempt but the last logs a WARNING
    assert text.startswith(f"{bus.describe()} did not start within start_timeout=0.5 s ({attempts} attempts)")
    assert "the last error: cannot connect to " in text and "Error 111" in text  # ECONNREFUSED
    assert [f"(attempt {n})" in t for n, t in enumerate(warnings.texts, 1)] == [True] * len(warnings.texts)
    assert attempts >= 3  # 0.05-0.1 s, then 0.1-0.2 s, then the rest: at least three tries in 0.5 s
    assert not bus.running
    # Nothing is left half-started: once Redis is up, the same bus starts.
    await asyncio.to_thread(fault_redis.start)
    await bus.start()
    assert bus.running


@pytest.mark.redis
async def test_start_timeout_0_is_one_attempt_with_the_transports_own_error(
        fault_redis: RedisServer, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_redis.kill()
    bus = make_bus(fault_redis.url, start_timeout=0)
    with pytest.raises(TransportError, match=r"^cannot connect to redis://127\.0\.0\.1:\d+/0: "):
        await bus.start()
    assert warnings.records == []


@pytest.mark.redis
async def test_stop_during_the_retrying_ends_it(
        fault_redis: RedisServer, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_redis.kill()
    bus = make_bus(fault_redis.url, start_timeout=60)
    starting = asyncio.create_task(bus.start())
    await warnings.wait_for(1)
    began = time.monotonic()
    await asyncio.wait_for(bus.stop(), WAIT)
    with pytest.raises(BusStopped, match="gave up after 1 attempts: stop\\(\\) was called"):
        await asyncio.wait_for(starting, WAIT)
    assert time.monotonic() - began < 1.0, "stop() waited for the retrying instead of ending it"
    assert not bus.running and len(warnings.records) == 1
    # The bus is as new: it starts once Redis is there.
    await asyncio.to_thread(fault_redis.start)
    await bus.start()
    assert bus.running


@pytest.mark.nats
async def test_a_bus_started_before_nats_waits_for_it(
        fault_nats: NatsServer, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_nats.kill()
    namespace = unique("ns")
    bus = make_bus(fault_nats.url + "?connect_timeout=0.5", namespace=namespace, startup_wait=0.05)
    await start_after_the_first_warning(bus, warnings, fault_nats.start)
    assert warnings.texts[0].startswith(f"cannot start {bus.describe()} (attempt 1): cannot connect to ")
    await assert_messages_flow(make_bus, fault_nats.url, bus, namespace)


@pytest.mark.mqtt
async def test_a_bus_started_before_mosquitto_waits_for_it(
        fault_mosquitto: Mosquitto, make_bus: MakeBus, warnings: StartWarnings) -> None:
    fault_mosquitto.kill()
    namespace = unique("ns")
    bus = make_bus(fault_mosquitto.url + "?connect_timeout=0.5", namespace=namespace, startup_wait=0.05)
    await start_after_the_first_warning(bus, warnings, fault_mosquitto.start)
    assert warnings.texts[0].startswith(f"cannot start {bus.describe()} (attempt 1): ")
    await assert_messages_flow(make_bus, fault_mosquitto.url, bus, namespace)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_start_timeout_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ConfigError, match="start_timeout must be a finite number of seconds, 0 or more"):
        EventBus("memory://", start_timeout=bad)


class Refusing(Transport):
    """A transport whose start raises ``errors`` in turn, then succeeds."""

    scheme = "refusing"

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)
        self.starts = 0

    async def start(self, node_id: str, namespace: str, on_frame: FrameHandler) -> None:
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)

    async def stop(self) -> None:
        pass

    async def broadcast(self, frame: Any, *, timeout: float | None = None) -> int | None:
        return 0

    async def unicast(self, node_id: str, frame: Any, *, timeout: float | None = None) -> bool:
        return False


async def test_only_a_transport_error_is_retried(warnings: StartWarnings) -> None:
    refusing = Refusing(ConfigError("namespace too long"))
    with pytest.raises(ConfigError, match="namespace too long"):
        await Startup(Node(""), refusing, 30.0).start(lambda frame: None)
    assert refusing.starts == 1 and warnings.records == []
    flaky = Refusing(TransportError("not yet"), TransportError("still not"))
    await Startup(Node(""), flaky, 30.0).start(lambda frame: None)
    assert flaky.starts == 3
    assert [text.split("): ", 1)[1].split(";")[0] for text in warnings.texts] == ["not yet", "still not"]


async def test_memory_never_waits(warnings: StartWarnings) -> None:
    async with EventBus(f"memory://{unique('hub')}", start_timeout=0.5) as bus:
        assert bus.running
    assert warnings.records == []


# -- event loops: bus.run() inside a loop, a bus carried into a later asyncio.run ----------------


async def test_bus_run_inside_a_running_loop_says_to_use_async_with() -> None:
    bus = EventBus()
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(BusError, match="bus.run\\(\\) starts its own event loop.*use 'async with bus:'"):
        bus.run(main)
    assert ran == [] and not bus.running  # main was closed, never run (no "never awaited" warning)
    async with bus:  # what the message says to do instead
        assert bus.running


@pytest.fixture
def ended_loop_bus() -> Iterator[EventBus]:
    """A bus started in an ``asyncio.run`` that has returned, with a handler at ``echo``."""
    bus = EventBus(f"memory://{unique('hub')}")
    bus.on("echo", lambda n: n)
    asyncio.run(bus.start())
    yield bus


ENDED = "started on another event loop, which has ended.*stop it there.*or create a new EventBus for this loop"


@pytest.mark.parametrize("call", ["publish", "send", "request", "consumer", "start", "stop"])
def test_a_bus_from_an_ended_loop_says_what_to_do(ended_loop_bus: EventBus, call: str) -> None:
    bus = ended_loop_bus
    uses: dict[str, Callable[[], Any]] = {
        "publish": lambda: bus.publish("echo", 1),
        "send": lambda: bus.send("echo", 1),
        "request": lambda: bus.request("echo", 1, timeout=WAIT),
        "start": bus.start,
        "stop": bus.stop,
    }

    async def use() -> None:
        if call == "consumer":
            bus.on(unique("late"), lambda n: n)
        else:
            await uses[call]()

    with pytest.raises(BusError, match=ENDED):
        asyncio.run(use())


def test_a_bus_stopped_in_its_loop_starts_again_in_a_new_one() -> None:
    bus = EventBus(f"memory://{unique('hub')}")
    bus.on("echo", lambda n: n * 2)

    async def round_trip(n: int) -> int:
        async with bus:
            return await bus.request("echo", n, timeout=WAIT)  # type: ignore[no-any-return]

    assert [asyncio.run(round_trip(n)) for n in (1, 2, 3)] == [2, 4, 6]

    async def restart_in_one_loop() -> tuple[bool, list[str]]:
        await bus.start()
        await bus.stop()
        await bus.start()  # before the first start's watch, cancelled by stop(), has ended
        await asyncio.sleep(0)  # one turn: it ends, and must not touch this start
        fast = bus._node.thread == threading.get_ident()  # calls still take the cheap thread check
        await bus.stop()
        await asyncio.sleep(0)
        return fast, [t.get_name() for t in asyncio.all_tasks() if t.get_name() == "addrbus-loop-watch"]

    assert asyncio.run(restart_in_one_loop()) == (True, [])


def test_a_bus_running_in_another_thread_refuses_start_and_stop_here() -> None:
    bus = EventBus(f"memory://{unique('hub')}")
    started, release = threading.Event(), threading.Event()

    async def serve() -> None:
        async with bus:
            started.set()
            await asyncio.to_thread(release.wait, WAIT)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert started.wait(WAIT)
        for call in (bus.start, bus.stop):
            with pytest.raises(BusError, match="runs on another event loop \\(or thread\\)"):
                asyncio.run(call())
        assert bus.running
    finally:
        release.set()
        thread.join(WAIT)
    assert not bus.running
