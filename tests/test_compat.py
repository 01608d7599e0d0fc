"""autobus compatibility: Event, Client and the module-level API, driven as autobus users do."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from addrbus import ConfigError, EventBus
from addrbus import _compat as autobus
from addrbus._compat import AUTOBUS_URL, Client, Event, event_address
from addrbus._compat import default as autobus_default
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns

WAIT = 5.0


class Ping(Event):
    id: int


class Pong(Ping):
    pass


class Blob(Event):
    data: bytes


@pytest.fixture(autouse=True)
def default_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test a fresh default client: autobus keeps one per process."""
    monkeypatch.setattr(autobus_default, "_default", None)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Clients a sync test made; stopped (each on a loop of its own) at teardown."""
    made: list[Client] = []
    yield made
    for client in made:
        asyncio.run(client.stop())


class Inbox(list[Any]):
    """What handlers received, appended from any thread; ``await inbox.holding(n)`` waits, no polling."""

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.append(item)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def holding(self, count: int, limit: float = WAIT) -> None:
        async with asyncio.timeout(limit):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()


# -- the module-level API ------------------------------------------------------------


async def test_five_publishes_then_stop_hands_all_five_to_a_sync_subscriber() -> None:
    received: list[int] = []

    @autobus.subscribe(Ping)
    def receive_pings(ping: Ping) -> None:
        assert threading.current_thread() is not threading.main_thread()  # never on the loop
        received.append(ping.id)

    await autobus.start(url="memory://")
    for n in range(5):
        autobus.publish(Ping(id=n))
    await autobus.stop()
    assert received == [0, 1, 2, 3, 4]


async def test_an_async_subscriber_gets_the_event_typed_as_its_class() -> None:
    received: list[Ping] = []

    @autobus.subscribe(Ping)
    async def receive_pings(ping):  # type: ignore[no-untyped-def]  # unannotated, as in autobus
        await asyncio.sleep(0)
        received.append(ping)

    await autobus.start(url="memory://?serialize=1")  # through JSON, as on a network
    for n in range(5):
        autobus.publish(Ping(id=n))
    await autobus.stop()
    assert sorted(p.id for p in received) == [0, 1, 2, 3, 4]
    assert all(type(p) is Ping for p in received)


async def test_a_subclass_is_a_different_event() -> None:
    pings: list[int] = []
    pongs: list[int] = []
    autobus.subscribe(Ping, lambda ping: pings.append(ping.id))
    autobus.subscribe(Pong, lambda pong: pongs.append(pong.id))
    await autobus.start(url="memory://")
    for n in range(5):
        autobus.publish(Pong(id=n))
    autobus.publish(Ping(id=5))
    await autobus.stop()
    assert pings == [5]
    assert pongs == [0, 1, 2, 3, 4]
    assert event_address(Pong) == "autobus.event.Pong"


async def test_events_published_before_start_wait_for_it() -> None:
    received: list[int] = []
    autobus.publish(Ping(id=1))  # autobus raised here; addrbus queues
    autobus.subscribe(Ping, lambda ping: received.append(ping.id))
    await autobus.start(url="memory://")
    autobus.publish(Ping(id=2))
    await autobus.stop()
    assert received == [1, 2]


async def test_unsubscribe() -> None:
    received = Inbox()

    def receive_pings(ping: Ping) -> None:
        received.add(ping.id)

    autobus.subscribe(Ping, receive_pings)
    autobus.subscribe(Ping, receive_pings)  # twice is once, as in autobus
    await autobus.start(url="memory://")
    for n in range(3):
        autobus.publish(Ping(id=n))
    await received.holding(3)
    autobus.unsubscribe(Ping, receive_pings)
    autobus.unsubscribe(Ping, receive_pings)  # not subscribed: nothing happens
    for n in range(3, 6):
        autobus.publish(Ping(id=n))
    await autobus.stop()
    assert received == [0, 1, 2]


async def test_publish_from_sync_code_without_await() -> None:
    received: list[int] = []
    autobus.subscribe(Ping, lambda ping: received.append(ping.id))

    def sync_code(first: int) -> None:
        for n in range(first, first + 3):
            autobus.publish(Ping(id=n))

    await autobus.start(url="memory://")
    sync_code(0)  # on the loop's thread
    await asyncio.to_thread(sync_code, 3)  # from another thread
    await autobus.stop()
    assert received == [0, 1, 2, 3, 4, 5]


async def test_a_sync_subscriber_can_publish() -> None:
    pongs = Inbox()

    @autobus.subscribe(Ping)
    def answer(ping: Ping) -> None:  # runs in a worker thread
        autobus.publish(Pong(id=ping.id))

    autobus.subscribe(Pong, lambda pong: pongs.add(pong.id))
    await autobus.start(url="memory://")
    autobus.publish(Ping(id=1))
    await pongs.holding(1)
    await autobus.stop()
    assert pongs == [1]


async def test_handler_errors_are_logged_and_the_bus_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    received: list[int] = []

    @autobus.subscribe(Ping)
    def fragile(ping: Ping) -> None:
        if ping.id == 0:
            raise RuntimeError("boom")
        received.append(ping.id)

    await autobus.start(url="memory://")
    with caplog.at_level(logging.ERROR, logger="addrbus"):
        autobus.publish(Ping(id=0))
        autobus.publish(Ping(id=1))
        await autobus.stop()
    assert received == [1]
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_an_event_the_bus_refuses_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    url = f"memory://{unique('hub')}?serialize=1"
    client = Client(url)
    other = Client(url)
    other.subscribe(Blob, lambda blob: None)
    other.subscribe(Ping, lambda ping: seen.append(ping.id))
    await other.start()
    await client.start()
    with caplog.at_level(logging.ERROR, logger="addrbus"):
        client.publish(Blob(data=b"\xff\xfe"))  # not valid UTF-8: no JSON for it
        client.publish(Ping(id=1))
        await client.stop()
        await other.stop()
    assert seen == [1]
    assert any("Blob" in r.getMessage() for r in caplog.records)


async def test_schedule_runs_fractional_every() -> None:
    pytest.importorskip("apscheduler")
    runs = Inbox()

    @autobus.schedule(autobus.every(0.1).seconds)
    def tick() -> None:
        runs.add(time.monotonic())

    await autobus.start(url="memory://")
    await runs.holding(3)
    await autobus.stop()
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    # Not rounded to whole seconds, nor to zero. The mean, not each gap: a run the loaded
    # machine started late is followed by one on time, a short gap that is not a fault.
    assert 0.05 < sum(gaps) / len(gaps) < 0.9, gaps


async def test_start_with_another_url_while_running_is_an_error() -> None:
    await autobus.start(url="memory://")
    with pytest.raises(ConfigError, match="stop"):
        await autobus.start(url="memory://elsewhere")


# -- Client ----------------------------------------------------------------------------


async def test_clients_on_one_hub_exchange_events_as_json() -> None:
    hub = unique("hub")
    received: list[Ping] = []
    a = Client(f"memory://{hub}?serialize=1")
    b = Client(f"memory://{hub}?serialize=1")
    a.subscribe(Ping, received.append)
    await a.start()
    await b.start()
    for n in range(5):
        b.publish(Ping(id=n))
    await b.stop()
    await a.stop()
    assert [p.id for p in received] == [0, 1, 2, 3, 4]
    assert all(type(p) is Ping for p in received)


async def test_namespaces_isolate_clients() -> None:
    hub = unique("hub")
    received_a: list[int] = []
    received_b: list[int] = []
    client_a = Client(f"memory://{hub}", namespace="ns_a")
    client_b = Client(f"memory://{hub}", namespace="ns_b")
    client_a.subscribe(Ping, lambda ping: received_a.append(ping.id))
    client_b.subscribe(Ping, lambda ping: received_b.append(ping.id))
    await client_a.start()
    await client_b.start()
    client_a.publish(Ping(id=1))
    client_a.publish(Ping(id=2))
    await client_a.stop()
    await client_b.stop()
    assert received_a == [1, 2]
    assert received_b == []


async def test_clients_with_a_shared_key_exchange_events() -> None:
    pytest.importorskip("cryptography")
    from addrbus._wire.sealing import generate_key

    url = f"memory://{unique('hub')}?serialize=1"  # sealed only where frames are bytes
    key = generate_key()
    received: list[int] = []
    a = Client(url, shared_key=key)
    b = Client(url, shared_key=key)
    a.subscribe(Ping, lambda ping: received.append(ping.id))
    await a.start()
    await b.start()
    b.publish(Ping(id=1))
    await b.stop()
    await a.stop()
    assert received == [1]


async def test_a_client_starts_again_after_stop() -> None:
    received: list[int] = []
    client = Client("memory://")
    client.subscribe(Ping, lambda ping: received.append(ping.id))
    for n in range(3):
        await client.start()
        client.publish(Ping(id=n))
        await client.stop()
    assert received == [0, 1, 2]


async def test_client_bus_is_the_underlying_event_bus() -> None:
    client = Client("memory://")
    client.subscribe(Ping, lambda ping: None)
    assert isinstance(client.bus, EventBus)
    await client.start()
    try:
        assert client.bus.running
        assert await client.bus.wait_for_handlers(event_address(Ping), timeout=WAIT) == 1
    finally:
        await client.stop()


def test_subscribe_needs_an_event_class() -> None:
    with pytest.raises(TypeError, match="event class"):
        Client().subscribe(Ping(id=1), print)  # type: ignore[call-overload]


def test_no_url_means_udp_multicast_as_autobus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADDRBUS_URL", raising=False)
    assert Client().bus.url == AUTOBUS_URL == "udp://239.255.0.1:5000"
    monkeypatch.setenv("ADDRBUS_URL", "memory://")
    assert Client().bus.url == "memory://"
    assert Client("memory://x").bus.url == "memory://x"


@pytest.mark.multicast
async def test_default_start_uses_multicast_between_clients() -> None:
    require_private_netns()
    namespace = unique("ns")
    received = Inbox()
    listener = Client(namespace=namespace)
    listener.subscribe(Ping, lambda ping: received.add(ping.id))
    await listener.start()
    try:
        autobus.subscribe(Ping, lambda ping: None)
        await autobus.start(namespace=namespace)  # no URL: udp://239.255.0.1:5000
        await listener.bus.wait_for_handlers(event_address(Ping), 2, timeout=WAIT)
        for n in range(5):
            autobus.publish(Ping(id=n))
        await received.holding(5)
        assert received == [0, 1, 2, 3, 4]
    finally:
        await autobus.stop()
        await listener.stop()


# -- run(): blocking, as autobus.run() ---------------------------------------------------


def _sigterm_when(event: threading.Event) -> threading.Thread:
    def wait_then_kill() -> None:
        if event.wait(WAIT):
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=wait_then_kill, daemon=True)
    thread.start()
    return thread


def test_client_run_blocks_until_sigterm(clients: list[Client]) -> None:
    received: list[int] = []
    got = threading.Event()
    client = Client("memory://")
    clients.append(client)

    @client.subscribe(Ping)
    def receive(ping: Ping) -> None:
        received.append(ping.id)
        got.set()

    client.publish(Ping(id=7))  # waits for run() to start the client
    killer = _sigterm_when(got)
    client.run()
    killer.join(WAIT)
    assert received == [7]
    assert not client.bus.running


def test_module_run_blocks_until_sigterm() -> None:
    got = threading.Event()
    autobus.subscribe(Ping, lambda ping: got.set())
    autobus.publish(Ping(id=1))
    killer = _sigterm_when(got)
    autobus.run(url="memory://", namespace="shop")
    killer.join(WAIT)
    assert got.is_set()
    assert autobus_default._client().bus.namespace == "shop"
