"""MqttTransport on its own and under a bus: URLs, topics, interest, auth, TLS, and a broker restart."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from addrbus import EventBus, RequestTimeout
from addrbus._exceptions import ConfigError, MessageTooLarge, TransportError
from addrbus.transports.mqtt import MqttTransport, from_url
from addrbus.transports.mqtt.options import DEFAULT_MAX_FRAME, parse_mqtt_url
from addrbus.transports.mqtt.topics import MAX_KEY_TOPIC, Topics, key_topic, level, unlevel
from addrbus.transports.registry import make_transport
from tests._faults import States, Traffic, now, two_buses
from tests.fixtures_mqtt import Mosquitto
from tests.fixtures_redis import free_port
from tests.transports._inbox import WAIT, Inbox

pytestmark = pytest.mark.mqtt


def node_id() -> str:
    return secrets.token_hex(8)


def ns() -> str:
    return f"test-{secrets.token_hex(4)}"


class TransportStates:
    """Record a transport's state changes; let a test wait for one."""

    def __init__(self, transport: MqttTransport) -> None:
        self.seen: list[str] = []
        self._events: dict[str, asyncio.Event] = {}
        transport.on_state(self)

    def __call__(self, state: str) -> None:
        self.seen.append(state)
        self._events.setdefault(state, asyncio.Event()).set()

    async def wait_for(self, state: str, limit: float = WAIT) -> None:
        await asyncio.wait_for(self._events.setdefault(state, asyncio.Event()).wait(), limit)


@asynccontextmanager
async def nodes(
    url: str, count: int, namespace: str | None = None
) -> AsyncIterator[list[tuple[MqttTransport, str, Inbox]]]:
    """Start ``count`` transports on one namespace; stop them all at the end."""
    namespace = namespace or ns()
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            transport, nid, inbox = from_url(url), node_id(), Inbox()
            await transport.start(nid, namespace, inbox)
            stack.push_async_callback(transport.stop)
            started.append((transport, nid, inbox))
        yield started


# -- URLs --------------------------------------------------------------------------------


def test_url_parsing() -> None:
    opts = parse_mqtt_url("mqtt://bus:pw%40x@broker.example:1884?qos=1&client_id=svc-1&timeout=2&keepalive=3")
    assert (opts.host, opts.port, opts.tls) == ("broker.example", 1884, False)
    assert (opts.username, opts.password) == ("bus", "pw@x")
    assert (opts.qos, opts.client_id, opts.timeout, opts.keepalive) == (1, "svc-1", 2.0, 3)
    assert "pw@x" not in repr(opts)
    plain = parse_mqtt_url("mqtt://localhost")
    assert (plain.port, plain.qos, plain.client_id, plain.max_frame_size) == (1883, 0, None, DEFAULT_MAX_FRAME)
    tls = parse_mqtt_url("mqtts://h?ca_certs=/ca.pem&check_hostname=no")
    assert (tls.port, tls.tls, tls.ca_certs, tls.check_hostname) == (8883, True, "/ca.pem", False)
    assert make_transport("mqtts://h:8884").scheme == "mqtts"
    assert isinstance(make_transport("mqtt://h"), MqttTransport)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mqtt://h?bogus=1", "accepted: client_id, connect_timeout, keepalive, max_frame_size, max_pending, qos,"),
        ("mqtt://h?ca_certs=/x", "unknown URL argument 'ca_certs'"),
        ("mqtt://h?qos=2", "qos"),
        ("mqtt://h?timeout=0", "timeout"),
        ("mqtt://h?max_frame_size=300000000", "max_frame_size"),
        ("mqtt://h?client_id=", "client_id"),
        ("mqtt://h:99999", "bad port"),
        ("mqtt://h/shop", "no path"),
        ("mqtts://h?keyfile=/k", "keyfile needs certfile"),
        ("mqtt://:hunter2@h", "only with a user name"),
        ("mqtt://u:hunter2@h?bogus=1", "mqtt://u:***@h?bogus=1"),
    ],
)
def test_bad_urls(url: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_url(url)
    assert needle in str(info.value)
    assert "hunter2" not in str(info.value)


def test_missing_aiomqtt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiomqtt", None)
    with pytest.raises(ConfigError, match=r"pip install 'addrbus\[mqtt\]'"):
        from_url("mqtt://localhost")


def test_describe_and_repr_hide_the_password() -> None:
    transport = from_url("mqtt://user:hunter2@localhost:1884")
    assert transport.describe() == "mqtt://user:***@localhost:1884"
    assert "hunter2" not in repr(transport)
    assert transport.needs_heartbeat and transport.routes_by_interest
    assert not transport.knows_listeners and not transport.passes_objects


# -- topics ------------------------------------------------------------------------------


def test_topic_names() -> None:
    topics = Topics("shop", "00ff00ff00ff00ff")
    assert (topics.broadcast, topics.inbox) == ("shop/b", "shop/n/00ff00ff00ff00ff")
    assert topics.key("users.created") == "shop/a/users/created"
    assert topics.key("a/b+#") == "shop/a/a%2Fb%2B%23"
    assert topics.key("a..b.") == "shop/a/a/%/b/%"
    assert topics.key("") == "shop/a/%"
    assert topics.key("100%") == "shop/a/100%25"
    assert Topics("$SYS", "00ff00ff00ff00ff").broadcast == "%24SYS/b"
    assert Topics("", "00ff00ff00ff00ff").broadcast == "%/b"
    assert level("\x00\x1f\u0085\ufffe") == "%00%1F%C2%85%EF%BF%BE"
    assert level("é.ü") == "é.ü"  # ordinary text stays readable
    with pytest.raises(ConfigError):
        Topics("shop", "NOT-A-NODE-ID")


def test_long_keys_get_a_digest_topic() -> None:
    key = "x" * MAX_KEY_TOPIC
    topic = key_topic("shop/", key)
    assert topic.startswith("shop/k/") and len(topic) < 100
    assert topic != key_topic("shop/", key + "y")


@given(st.text())
def test_levels_round_trip_and_carry_nothing_special(text: str) -> None:
    escaped = level(text)
    assert unlevel(escaped) == text
    assert escaped and not set(escaped) & set("/+#$\x00")
    assert escaped.encode("utf-8")  # no lone surrogate is left to refuse


@given(st.text(), st.text())
def test_distinct_keys_and_namespaces_never_share_a_topic(a: str, b: str) -> None:
    if a != b:
        assert key_topic(Topics(a, "0" * 16).prefix, "k") != key_topic(Topics(b, "0" * 16).prefix, "k")
        assert key_topic("ns/", a) != key_topic("ns/", b)


# -- against a private mosquitto ------------------------------------------------------------


async def test_unicast_and_broadcast(mosquitto: Mosquitto) -> None:
    async with nodes(mosquitto.url, 3) as [(a, _, a_in), (b, b_id, b_in), (_, c_id, c_in)]:
        assert a.state == "connected"
        assert await a.broadcast(b"hello all") is None  # the broker does not say who heard it
        assert await a.unicast(b_id, b"just b") is True
        assert await a.unicast(c_id, b"\x00binary\xff") is True
        assert await b_in.wait_for(2) == [b"hello all", b"just b"]
        assert await c_in.wait_for(2) == [b"hello all", b"\x00binary\xff"]
        await b.broadcast(b"from b")
        assert await a_in.wait_for(1) == [b"from b"]
        await c_in.wait_for(3)
        # No Local: b never hears its own broadcast.
        assert b_in.frames == [b"hello all", b"just b"]
        assert a.stats()["frames_sent"] == 3 and b.stats()["frames_received"] == 2


async def test_namespaces_are_isolated(mosquitto: Mosquitto) -> None:
    async with nodes(mosquitto.url, 2, "a") as [(a1, _, a1_in), (_, _, a2_in)]:
        async with nodes(mosquitto.url, 2, "a/b") as [(ab1, _, ab1_in), (_, _, ab2_in)]:
            await a1.broadcast(b"to a")
            await ab1.broadcast(b"to a/b")
            assert await a2_in.wait_for(1) == [b"to a"]
            assert await ab2_in.wait_for(1) == [b"to a/b"]
            assert a1_in.frames == [] and ab1_in.frames == []


async def test_publish_reaches_only_subscribers(mosquitto: Mosquitto) -> None:
    async with nodes(mosquitto.url, 3) as [(a, a_id, a_in), (b, _, b_in), (c, _, c_in)]:
        await b.subscribe(["orders.created", "odd/+#key"])
        await a.subscribe(["orders.created"])  # a publishes and consumes: it must not hear itself
        await a.publish("orders.created", b"order 1")
        await a.publish("odd/+#key", b"odd")
        await a.publish("nobody.listens", b"lost")
        assert await b_in.wait_for(2) == [b"order 1", b"odd"]
        await c.unicast(a_id, b"marker")  # after the publishes, on another topic: a has had its chance
        assert await a_in.wait_for(1) == [b"marker"]
        assert c_in.frames == []
        await b.unsubscribe(["orders.created"])
        await b.unsubscribe(["orders.created"])  # idempotent
        await a.publish("orders.created", b"order 2")
        await a.publish("odd/+#key", b"still")
        assert await b_in.wait_for(3) == [b"order 1", b"odd", b"still"]
        assert b.stats()["interest_subscriptions"] == 1


async def test_qos_1_and_large_frames(mosquitto: Mosquitto) -> None:
    async with nodes(mosquitto.url + "?qos=1&max_frame_size=2000000", 2) as [(a, _, _), (_, b_id, b_in)]:
        results = await asyncio.gather(*(a.unicast(b_id, b"%04d" % i) for i in range(300)))
        assert all(results)
        assert [int(f) for f in await b_in.wait_for(300)] == list(range(300))
        big = bytes(range(256)) * 4096  # 1 MiB, every byte value
        assert await a.unicast(b_id, big) is True
        assert (await b_in.wait_for(301))[300] == big
        with pytest.raises(MessageTooLarge) as info:
            await a.unicast(b_id, b"x" * 2_000_001)
        assert info.value.limit == 2_000_000


async def test_stop_is_idempotent_and_restartable(mosquitto: Mosquitto) -> None:
    namespace = ns()
    a, b = from_url(mosquitto.url), from_url(mosquitto.url)
    a_id, b_id, b_in = node_id(), node_id(), Inbox()
    await a.start(a_id, namespace, Inbox())
    await b.start(b_id, namespace, b_in)
    with pytest.raises(TransportError, match="already started"):
        await a.start(a_id, namespace, Inbox())
    await a.stop()
    await a.stop()
    with pytest.raises(TransportError, match="stopped"):
        await a.unicast(b_id, b"after stop")
    await a.start(a_id, namespace, Inbox())
    assert await a.unicast(b_id, b"after restart") is True
    assert await b_in.wait_for(1) == [b"after restart"]
    await a.stop()
    await b.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("addrbus-mqtt")]


async def test_start_fails_cleanly_without_a_broker() -> None:
    transport = from_url(f"mqtt://u:hunter2@127.0.0.1:{free_port()}?connect_timeout=1")
    with pytest.raises(TransportError) as info:
        await transport.start(node_id(), ns(), Inbox())
    assert "cannot connect" in str(info.value) and "hunter2" not in str(info.value)
    assert transport.state == "disconnected"


async def test_password_file_and_secrets_never_show(secret_mosquitto: Mosquitto,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    secret = secret_mosquitto.password
    assert secret
    caplog.set_level(logging.DEBUG)
    texts = []
    for url in (secret_mosquitto.url.replace(secret, "wrong-" + secret), f"mqtt://127.0.0.1:{secret_mosquitto.port}"):
        refused = from_url(url)
        with pytest.raises(TransportError) as info:
            await refused.start(node_id(), ns(), Inbox())
        texts += [str(info.value), repr(refused)]
    assert "wrong-" not in texts[0] and "***" in texts[0]
    async with nodes(secret_mosquitto.url, 2) as [(a, _, _), (b, b_id, b_in)]:
        texts += [repr(a), a.describe(), str(a.stats())]
        states, b_states = TransportStates(a), TransportStates(b)
        secret_mosquitto.kill()
        await states.wait_for("disconnected")
        with pytest.raises(TransportError) as info:
            await a.unicast(b_id, b"x")
        assert "disconnected" in str(info.value)
        texts.append(str(info.value))
        await asyncio.to_thread(secret_mosquitto.restart)
        await states.wait_for("reconnected")
        await b_states.wait_for("reconnected")
        assert await a.unicast(b_id, b"authenticated again") is True
        assert await b_in.wait_for(1) == [b"authenticated again"]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("***" in text for text in texts)
    assert not [text for text in texts if secret in text]


async def test_tls_with_the_test_ca(tls_mosquitto: Mosquitto) -> None:
    async with nodes(tls_mosquitto.tls_url(), 2) as [(a, _, _), (_, b_id, b_in)]:
        assert a.scheme == "mqtts"
        assert await a.unicast(b_id, b"over TLS") is True
        assert await b_in.wait_for(1) == [b"over TLS"]


# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector
# (Client._ssl_wrap_socket raises from do_handshake() without closing it).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_tls_refuses_an_untrusted_broker(tls_mosquitto: Mosquitto) -> None:
    untrusted = from_url(f"mqtts://127.0.0.1:{tls_mosquitto.tls_port}?connect_timeout=2")
    with pytest.raises(TransportError, match="cannot connect") as info:
        await untrusted.start(node_id(), ns(), Inbox())
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    del info
    gc.collect()  # here, inside the mark, rather than in a later test


async def test_subscriptions_survive_a_broker_restart(fault_mosquitto: Mosquitto) -> None:
    async with nodes(fault_mosquitto.url, 2) as [(a, _, _), (b, _, b_in)]:
        a_states, b_states = TransportStates(a), TransportStates(b)
        await b.subscribe(["before"])
        fault_mosquitto.kill()
        await b_states.wait_for("disconnected")
        await b.subscribe(["during"])  # remembered while disconnected
        await asyncio.to_thread(fault_mosquitto.restart)
        await a_states.wait_for("reconnected")
        await b_states.wait_for("reconnected")
        await a.publish("before", b"1")
        await a.publish("during", b"2")
        assert await b_in.wait_for(2) == [b"1", b"2"]
        assert b.stats()["reconnects"] == 1 and b_states.seen == ["disconnected", "reconnected"]


async def test_broker_restart_during_request_traffic(fault_mosquitto: Mosquitto) -> None:
    async with two_buses(fault_mosquitto.url) as (requester, responder, echo, address):
        states, responder_states = States(requester), States(responder)
        async with Traffic(requester, address, timeout=0.5) as traffic:
            await traffic.flowing()
            fault_mosquitto.kill()
            await states.wait("disconnected")
            await asyncio.sleep(1.0)  # the outage itself: peers miss their heartbeats meanwhile
            restarted = now()
            await asyncio.to_thread(fault_mosquitto.restart)
            await states.wait("reconnected")
            await responder_states.wait("reconnected")
            recovered = await traffic.ok_after(restarted, WAIT) - restarted
            await traffic.flowing()
            outcomes = await traffic.check()
        assert outcomes["ok"] >= 40 and sum(outcomes.values()) > outcomes["ok"]
        assert [s for s, _ in states.seen] == ["disconnected", "reconnected"]
        echo.assert_no_duplicates()
        assert requester.transport_state == "reconnected"
        assert isinstance(requester, EventBus)
        print(f"\nserving again {recovered:.3f} s after the new mosquitto was spawned; {dict(outcomes)}")


async def test_a_hung_broker_is_dropped_after_two_keepalives(fault_mosquitto: Mosquitto) -> None:
    async with nodes(fault_mosquitto.url + "?keepalive=1", 2) as [(a, _, _), (b, b_id, b_in)]:
        states, b_states = TransportStates(a), TransportStates(b)
        fault_mosquitto.pause()
        paused = now()
        try:
            await states.wait_for("disconnected", 4.0)
            noticed = now() - paused
            await b_states.wait_for("disconnected", 4.0)  # or b may never drop, and never reconnect
            with pytest.raises(TransportError, match="disconnected"):
                await a.unicast(b_id, b"into the freeze")
        finally:
            fault_mosquitto.resume()
        await states.wait_for("reconnected", 4.0)
        await b_states.wait_for("reconnected", 4.0)
        assert 1.0 <= noticed < 3.5
        assert await a.unicast(b_id, b"thawed") is True
        assert b"thawed" in await b_in.wait_for(1)


# -- the broker chooses the consumer (shared subscriptions) ----------------------------------------


async def test_sends_and_requests_go_through_a_shared_subscription_to_a_live_consumer(mosquitto: Mosquitto) -> None:
    """Two consumers, one's connection gone without a goodbye: the broker hands every request to the other."""
    buses = [EventBus(mosquitto.url, namespace="share", heartbeat=60.0, stop_timeout=0.5) for _ in range(3)]
    one, two, client = buses
    got = {"one": 0, "two": 0}

    @one.on("work")
    async def at_one(n: int) -> int:
        got["one"] += 1
        return n

    @two.on("work")
    async def at_two(n: int) -> int:
        got["two"] += 1
        return n

    for bus in buses:
        await bus.start()
    try:
        await client.wait_for_handlers("work", 2, timeout=10)
        assert client.transport_routes_sends
        assert one.stats()["transport.shared_subscriptions"] == 1
        for n in range(40):
            await client.send("work", n)
        for n in range(40):
            assert await client.request("work", n, timeout=5) == n
        assert got["one"] > 0 and got["two"] > 0, got  # the broker shares them out
        await one._transport.stop()  # gone from the broker; the client's table still lists it
        for _ in range(10):  # bounded: a request sent as the broker dropped it may be lost with it
            try:
                await client.request("work", -1, timeout=0.5)
                break
            except RequestTimeout:
                continue
        before = got["one"]
        for n in range(30):
            assert await client.request("work", n, timeout=2.0) == n
        assert got["one"] == before
    finally:
        for bus in buses:
            await bus.stop()
