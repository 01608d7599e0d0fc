"""The in-process bus as users drive it: lifecycle, handlers, semantics, limits."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from addrbus import (
    BusError,
    BusNotRunning,
    BusStopped,
    ConfigError,
    EventBus,
    Message,
    NoHandlers,
    RecipientFailure,
    Registration,
    RequestTimeout,
)

WAIT = 5.0


class Address(str, Enum):
    ECHO = "test.echo"
    NEWS = "test.news"


class User(BaseModel):
    id: int
    name: str


# -- lifecycle --------------------------------------------------------------------


async def test_async_with_starts_and_stops() -> None:
    bus = EventBus()
    assert not bus.running
    async with bus:
        assert bus.running
    assert not bus.running


async def test_a_stopped_bus_starts_again(address: str) -> None:
    bus = EventBus("memory://")
    bus.on(address, lambda x: x)
    for _ in range(3):
        async with bus:
            assert await bus.request(address, 1, timeout=WAIT) == 1


async def test_use_before_start_is_a_clear_error(address: str) -> None:
    bus = EventBus()
    with pytest.raises(BusNotRunning, match="async with bus"):
        await bus.publish(address, 1)


def test_run_blocks_and_returns_mains_result(address: str) -> None:
    bus = EventBus()

    @bus.on(address)
    async def double(x: int) -> int:
        return 2 * x

    async def main() -> int:
        return await bus.request(address, 4, timeout=WAIT)  # type: ignore[no-any-return]

    assert bus.run(main) == 8
    assert not bus.running


async def test_many_private_buses_do_not_see_each_other(address: str) -> None:
    a, b = EventBus(), EventBus()
    a.on(address, lambda x: x)
    async with a, b:
        with pytest.raises(NoHandlers):
            await b.request(address, 1, timeout=WAIT)


async def test_bad_url_and_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="accepted"):
        EventBus("amqp://localhost")
    with pytest.raises(ConfigError, match="serialize"):
        EventBus("memory://?bogus=1")
    with pytest.raises(ConfigError):
        EventBus(max_queue=0)
    with pytest.raises(ConfigError):
        EventBus(namespace="bad\nname")


# -- registration forms -------------------------------------------------------------


async def test_consumer_forms(address: str) -> None:
    bus = EventBus()

    async def handler(msg: Message[int]) -> int:
        return msg.body + 1

    reg = bus.consumer(address, handler)
    assert isinstance(reg, Registration) and reg.address == address

    @bus.consumer(Address.ECHO)
    async def echo(msg: Message[str]) -> str:
        return msg.body

    assert isinstance(echo.registration, Registration)  # type: ignore[attr-defined]
    async with bus:
        assert await bus.request(address, 1, timeout=WAIT) == 2
        assert await bus.request(Address.ECHO, "x", timeout=WAIT) == "x"
        assert await bus.request("test.echo", "y", timeout=WAIT) == "y"


async def test_on_passes_the_body_and_handlers_may_take_nothing(address: str) -> None:
    bus = EventBus()
    seen: list[Any] = []
    bus.on(address, lambda body: seen.append(body))  # unannotated: the body
    calls = []

    @bus.on(address)
    async def ping() -> None:
        calls.append(1)

    async with bus:
        await bus.publish(address, {"k": 1})
        await bus.drain()
    assert seen == [{"k": 1}] and calls == [1]


async def test_consumer_unannotated_gets_the_message(address: str) -> None:
    bus = EventBus()
    got: list[Any] = []

    @bus.consumer(address)
    async def handle(msg):  # type: ignore[no-untyped-def]
        got.append(msg)

    async with bus:
        await bus.publish(address, 3, headers={"h": "v"})
        await bus.drain()
    assert isinstance(got[0], Message) and got[0].body == 3 and got[0].headers == {"h": "v"}


async def test_handler_taking_two_arguments_is_rejected(address: str) -> None:
    bus = EventBus()

    async def bad(a: int, b: int) -> None: ...

    with pytest.raises(ConfigError, match="at most one argument"):
        bus.on(address, bad)


async def test_unregister_removes_the_handler(address: str) -> None:
    bus = EventBus()
    reg = bus.on(address, lambda x: x)
    async with bus:
        assert await bus.request(address, 1, timeout=WAIT) == 1
        reg.unregister()
        reg.unregister()  # idempotent
        with pytest.raises(NoHandlers):
            await bus.request(address, 1, timeout=WAIT)


# -- typing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "sent", "expected"),
    [
        (int, "5", 5),
        (float, 2, 2.0),
        (uuid.UUID, "12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        (datetime, "2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (list[int], ["1", 2], [1, 2]),
        (int | str, "x", "x"),
        (type(None), None, None),
        (User, {"id": "7", "name": "ada"}, User(id=7, name="ada")),
        (list[User], [{"id": 1, "name": "a"}], [User(id=1, name="a")]),
    ],
)
async def test_bodies_are_validated_to_the_annotation(address: str, annotation: Any, sent: Any, expected: Any) -> None:
    bus = EventBus()
    got: list[Any] = []

    async def handle(msg: Message[Any]) -> None:
        got.append(msg.body)

    handle.__annotations__["msg"] = Message[annotation]  # type: ignore[valid-type]
    bus.consumer(address, handle)
    async with bus:
        await bus.request(address, sent, timeout=WAIT)
    assert got == [expected] and type(got[0]) is type(expected)


async def test_an_instance_of_the_annotated_model_passes_as_is(address: str) -> None:
    bus = EventBus()
    got: list[User] = []

    @bus.on(address)
    async def handle(user: User) -> None:
        got.append(user)

    user = User(id=1, name="a")
    async with bus:
        await bus.request(address, user, timeout=WAIT)
    assert got[0] is user


async def test_invalid_body_never_reaches_the_handler(address: str) -> None:
    bus = EventBus()
    calls: list[User] = []
    bus.on(address, calls.append)
    calls_typed: list[User] = []

    @bus.on(address + ".typed")
    async def typed(user: User) -> None:
        calls_typed.append(user)

    async with bus:
        with pytest.raises(RecipientFailure) as info:
            await bus.request(address + ".typed", {"id": "not-a-number-SECRET"}, timeout=WAIT)
    assert info.value.code == 422
    assert "id" in info.value.message and "name" in info.value.message
    assert "SECRET" not in str(info.value)
    assert calls_typed == []


async def test_response_type_validates_the_reply(address: str) -> None:
    bus = EventBus()
    bus.on(address, lambda body: {"id": "3", "name": "x"})
    async with bus:
        assert await bus.request(address, None, response_type=User, timeout=WAIT) == User(id=3, name="x")
        assert await bus.request(address, None, timeout=WAIT) == {"id": "3", "name": "x"}
        with pytest.raises(RecipientFailure, match="reply did not validate"):
            await bus.request(address, None, response_type=int, timeout=WAIT)


# -- semantics ------------------------------------------------------------------------


async def test_send_and_request_round_robin_among_local_handlers(address: str) -> None:
    bus = EventBus()
    for name in ("a", "b", "c"):
        bus.on(address, lambda body, name=name: name)
    async with bus:
        got = [await bus.request(address, None, timeout=WAIT) for _ in range(6)]
    assert got == ["a", "b", "c", "a", "b", "c"]


async def test_publish_fans_out_to_every_handler(address: str) -> None:
    bus = EventBus()
    got: list[str] = []
    for name in ("a", "b", "c"):
        bus.on(address, lambda body, name=name: got.append(name + str(body)))
    async with bus:
        await bus.publish(address, 1)
        await bus.drain()
    assert sorted(got) == ["a1", "b1", "c1"]


async def test_ids_and_correlation_ids_are_unique(address: str) -> None:
    bus = EventBus()
    seen: list[Message[Any]] = []

    @bus.consumer(address)
    async def record(msg: Message[Any]) -> None:
        seen.append(msg)

    async with bus:
        for _ in range(50):
            await bus.request(address, None, timeout=WAIT)
            await bus.send(address, None)
            await bus.publish(address, None)
        await bus.drain()
    ids = [m.id for m in seen]
    cids = [m.correlation_id for m in seen if m.correlation_id]
    assert len(ids) == 150 and len(set(ids)) == 150
    assert len(cids) == 50 and len(set(cids)) == 50


async def test_no_handlers_is_raised_at_once(address: str) -> None:
    async with EventBus() as bus:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(NoHandlers):
            await bus.request(address, None, timeout=30)
        assert loop.time() - t0 < 0.5
        assert bus.stats()["failures.no_handlers"] == 1


async def test_timeout_is_a_timeout_error_and_leaves_nothing_pending(address: str) -> None:
    bus = EventBus()
    release = asyncio.Event()

    @bus.on(address)
    async def slow(body: Any) -> None:
        await release.wait()

    async with bus:
        with pytest.raises(TimeoutError):
            await bus.request(address, None, timeout=0.05)
        with pytest.raises(RequestTimeout) as info:
            await bus.request(address, None, timeout=0.05)
        assert info.value.failure_type.value == "TIMEOUT"
        assert bus.stats()["pending_requests"] == 0
        release.set()


async def test_handler_exception_becomes_recipient_failure_quickly(address: str) -> None:
    bus = EventBus()

    @bus.on(address)
    def boom(body: Any) -> None:
        raise ValueError("bad thing")

    async with bus:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RecipientFailure) as info:
            await bus.request(address, None, timeout=30)
        assert loop.time() - t0 < 1.0
    assert info.value.remote_type == "ValueError" and info.value.code == 500
    assert "bad thing" in str(info.value)


async def test_a_handler_exception_never_stops_the_bus(address: str) -> None:
    bus = EventBus()
    ok: list[int] = []

    @bus.on(address)
    async def flaky(n: int) -> None:
        if n % 2:
            raise RuntimeError("odd")
        ok.append(n)

    async with bus:
        for n in range(10):
            await bus.publish(address, n)
        await bus.drain()
    assert ok == [0, 2, 4, 6, 8]


async def test_a_request_whose_deadline_passed_is_not_started(address: str) -> None:
    bus = EventBus()
    gate = asyncio.Event()
    started: list[int] = []

    entered = asyncio.Event()

    @bus.on(address, concurrency=1)
    async def handle(n: int) -> None:
        started.append(n)
        if n == 0:
            entered.set()
            await gate.wait()

    async with bus:
        first = asyncio.ensure_future(bus.request(address, 0, timeout=WAIT))
        await asyncio.wait_for(entered.wait(), WAIT)
        with pytest.raises(RequestTimeout):
            await bus.request(address, 1, timeout=0.05)  # waits behind 0, then expires
        gate.set()
        await first
        await bus.drain()
    assert started == [0]
    assert bus.stats()["dropped.expired"] == 1


async def test_stop_fails_pending_requests_at_once_and_waits_for_handlers(address: str) -> None:
    bus = EventBus(stop_timeout=WAIT)
    finished = asyncio.Event()
    entered = asyncio.Event()

    @bus.on(address)
    async def work(body: Any) -> None:
        entered.set()
        await asyncio.sleep(0.05)
        finished.set()

    await bus.start()
    pending = asyncio.ensure_future(bus.request(address, None, timeout=60))
    await asyncio.wait_for(entered.wait(), WAIT)
    await bus.stop()
    assert finished.is_set()  # stop() waited for the running handler
    with pytest.raises(BusStopped):
        await pending


async def test_stop_cancels_handlers_that_outlive_stop_timeout(address: str) -> None:
    bus = EventBus(stop_timeout=0.05)
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    @bus.on(address)
    async def hang(body: Any) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await bus.start()
    await bus.publish(address, None)
    await asyncio.wait_for(entered.wait(), WAIT)
    await asyncio.wait_for(bus.stop(), WAIT)
    assert cancelled.is_set()


async def test_sync_handlers_run_in_a_thread_not_on_the_loop(address: str) -> None:
    bus = EventBus()
    threads: list[int] = []
    release = threading.Event()

    @bus.on(address)
    def blocking(body: Any) -> str:
        threads.append(threading.get_ident())
        release.wait(WAIT)  # would freeze the loop if run on it
        return "done"

    async with bus:
        pending = asyncio.ensure_future(bus.request(address, None, timeout=WAIT))
        for _ in range(100):  # the loop keeps turning meanwhile
            await asyncio.sleep(0)
        release.set()
        assert await pending == "done"
    assert threads and threads[0] != threading.get_ident()


async def test_a_slow_listener_that_drops_never_blocks_the_publisher(address: str) -> None:
    bus = EventBus(max_queue=100)
    gate = asyncio.Event()

    @bus.on(address, overflow="drop_new")
    async def slow(n: int) -> None:
        await gate.wait()

    fast: list[int] = []
    bus.on(address, fast.append, overflow="drop_new")
    async with bus:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for n in range(1000):
            await bus.publish(address, n)
        assert loop.time() - t0 < 1.0
        gate.set()
        await bus.drain()


async def test_overflow_is_dropped_counted_and_requests_answered(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    gate = asyncio.Event()

    entered = asyncio.Event()

    @bus.on(address, max_queue=10, concurrency=1, overflow="drop_new")
    async def slow(n: int) -> int:
        entered.set()
        await gate.wait()
        return n

    async with bus:
        await bus.publish(address, 0)
        await asyncio.wait_for(entered.wait(), WAIT)
        for n in range(1, 30):
            await bus.publish(address, n)
        with pytest.raises(RecipientFailure) as info:
            await bus.request(address, 99, timeout=WAIT)
        assert info.value.code == 503
        gate.set()
        await bus.drain()
        stats = bus.stats()
    # 1 running + 10 queued fit; the rest (19 publishes + 1 request) were dropped
    assert stats["dropped.overflow"] == 20
    assert sum("overflowing" in r.getMessage() for r in caplog.records) == 1


async def test_headers_must_be_strings(address: str) -> None:
    async with EventBus() as bus:
        bus.on(address, lambda x: x)
        with pytest.raises(TypeError):
            await bus.publish(address, 1, headers={"a": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "tab\there", "x" * 256, "del\x7f"])
async def test_bad_addresses_are_rejected_before_sending(bad: str) -> None:
    bus = EventBus()
    with pytest.raises(ValueError):
        bus.on(bad, lambda x: x)
    async with bus:
        for call in (bus.send, bus.request, bus.publish):
            with pytest.raises(ValueError):
                await call(bad, 1)
    assert bus.stats()["sent"] == 0


async def test_non_string_addresses_are_rejected() -> None:
    async with EventBus() as bus:
        with pytest.raises(TypeError):
            await bus.send(42, 1)


async def test_stream_iterates_and_unregisters(address: str) -> None:
    bus = EventBus()
    async with bus:
        received: list[int] = []

        async def consume() -> None:
            async for msg in bus.stream(address, int):
                received.append(msg.body)
                if len(received) == 3:
                    break

        task = asyncio.ensure_future(consume())
        await bus.wait_for_handlers(address, 1, timeout=WAIT)
        for n in range(3):
            await bus.publish(address, str(n))
        await asyncio.wait_for(task, WAIT)
        assert received == [0, 1, 2]


async def test_stream_wakes_when_the_bus_stops(address: str) -> None:
    bus = EventBus()
    await bus.start()
    async with bus.stream(address) as messages:
        waiter = asyncio.ensure_future(messages.get())
        await asyncio.sleep(0)
        await bus.stop()
        with pytest.raises(BusNotRunning):
            await asyncio.wait_for(waiter, WAIT)


async def test_stats_count_what_happened(address: str) -> None:
    bus = EventBus()
    bus.on(address, lambda x: x)
    async with bus:
        await bus.request(address, 1, timeout=WAIT)
        await bus.send(address, 1)
        await bus.publish(address, 1)
        await bus.drain()
        stats = bus.stats()
    counts = [stats[k] for k in ("requests", "sent", "published", "delivered", "replies")]
    assert counts == [1, 1, 1, 3, 1]


def test_repr_has_no_secrets() -> None:
    bus = EventBus("memory://hub-x")
    assert "memory://hub-x" in repr(bus) and "stopped" in repr(bus)


async def test_from_env(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv("ADDRBUS_URL", "memory://env-hub")
    monkeypatch.setenv("ADDRBUS_NAMESPACE", "envns")
    bus = EventBus.from_env()
    assert bus.url == "memory://env-hub" and bus.namespace == "envns"


async def test_two_buses_on_a_named_hub_are_nodes_of_one_bus(address: str) -> None:
    hub = f"memory://{address}"
    a, b = EventBus(hub), EventBus(hub)
    a.on(address, lambda x: x * 10)
    async with a, b:
        assert await b.request(address, 2, timeout=WAIT) == 20
        assert set(b.nodes()) == {a.node_id, b.node_id}


async def test_listeners_of_a_named_namespace_are_isolated(address: str) -> None:
    hub = f"memory://{address}"
    a, b = EventBus(hub, namespace="x"), EventBus(hub, namespace="y")
    a.on(address, lambda x: x)
    async with a, b:
        with pytest.raises(NoHandlers):
            await b.request(address, 1, timeout=WAIT)




async def test_drain_inside_a_handler_does_not_wait_for_itself(address: str) -> None:
    bus = EventBus()
    drained: list[bool] = []

    @bus.on(address)
    async def handler(body: Any) -> None:
        drained.append(await bus.drain(WAIT))

    async with bus:
        await bus.request(address, None, timeout=WAIT)
    assert drained == [True]


async def test_requests_in_flight_to_one_node_are_windowed_on_udp_like_transports(address: str) -> None:
    hub = f"memory://{address}?serialize=1"
    server, client = EventBus(hub), EventBus(hub)
    client._transport.max_in_flight = 3  # as udp:// does, with 1,024
    entered: list[int] = []
    gate = asyncio.Event()
    three_in = asyncio.Event()

    @server.on(address)
    async def hold(n: int) -> int:
        entered.append(n)
        if len(entered) == 3:
            three_in.set()
        await gate.wait()
        return n

    async with server, client:
        requests = [asyncio.ensure_future(client.request(address, n, timeout=WAIT)) for n in range(10)]
        await asyncio.wait_for(three_in.wait(), WAIT)
        for _ in range(20):
            await asyncio.sleep(0)
        assert entered == [0, 1, 2]  # the other seven wait for a slot, in order
        gate.set()
        assert await asyncio.gather(*requests) == list(range(10))
    assert entered == list(range(10))


async def test_registering_on_a_running_bus_from_another_thread_fails_clearly(address: str) -> None:
    bus = EventBus()
    async with bus:
        with pytest.raises(BusError, match="event loop"):
            await asyncio.to_thread(bus.on, address, lambda x: x)
        assert bus.nodes()[bus.node_id] == {}
