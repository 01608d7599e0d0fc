"""nats:// at the transport level: URLs, secrets, auth, interest subjects, limits, a stopped or lost server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from addrbus import EventBus
from addrbus._exceptions import ConfigError, MessageTooLarge, TransportError
from addrbus._ids import new_node_id
from addrbus.transports.nats import NatsTransport, from_url, subjects
from addrbus.transports.nats.options import parse_nats_url, redact
from tests.fixtures_nats import NatsServer
from tests.transports._inbox import WAIT, Inbox

pytestmark = pytest.mark.nats

Node = tuple[NatsTransport, str, Inbox]


@asynccontextmanager
async def started(url: str, count: int, namespace: str = "ns") -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for _ in range(count):
            transport, node_id, inbox = from_url(url), new_node_id(), Inbox()
            await transport.start(node_id, namespace, inbox)
            nodes.append((transport, node_id, inbox))
        yield nodes
    finally:
        for transport, _, _ in nodes:
            await transport.stop()


# -- URLs ------------------------------------------------------------------------------------------


def test_urls_name_servers_credentials_and_arguments() -> None:
    one = parse_nats_url("nats://localhost")
    assert one.servers == ("nats://localhost:4222",) and not one.tls
    cluster = parse_nats_url("nats://bus:pw@h1:4222,h2:4223,h3?name=orders&timeout=2&connect_timeout=1.5")
    assert cluster.servers == ("nats://h1:4222", "nats://h2:4223", "nats://h3:4222")
    assert (cluster.user, cluster.password, cluster.name, cluster.timeout, cluster.connect_timeout) == (
        "bus", "pw", "orders", 2.0, 1.5)
    assert parse_nats_url("tls://h:4443?ca_certs=/ca.pem").tls
    token = parse_nats_url("nats://h?token=t0k3n&creds=/etc/bus.creds")
    assert (token.token, token.creds) == ("t0k3n", "/etc/bus.creds")
    assert "t0k3n" not in repr(token) and "pw" not in repr(cluster)


@pytest.mark.parametrize(("url", "words"), [
    ("nats://h?colour=blue", ["unknown URL argument 'colour'", "accepted:", "token", "creds", "name"]),
    ("nats://h:99999", ["bad server", "port 1 to 65535"]),
    ("nats://h1,,h2", ["bad server"]),
    ("nats://h/path", ["unexpected path"]),
    ("nats://h?timeout=-1", ["bad value for URL argument 'timeout'"]),
    ("nats://h?certfile=/c.pem", ["certfile and keyfile go together"]),
])
def test_a_bad_url_says_what_is_accepted(url: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_nats_url(url)
    for word in words:
        assert word in str(info.value)


def test_secrets_never_reach_describe_repr_or_errors() -> None:
    url = "nats://bus:hunter2@h1:4222,h2?token=s3cr3t-t0k3n&name=x"
    transport = from_url(url)
    for text in (transport.describe(), repr(transport), redact(url)):
        assert "hunter2" not in text and "s3cr3t-t0k3n" not in text
        assert "***" in text and "h1:4222,h2" in text
    with pytest.raises(ConfigError) as info:
        from_url("nats://bus:hunter2@h?bogus=1")
    assert "hunter2" not in str(info.value)


def test_subject_tokens_are_unambiguous_and_never_wildcards() -> None:
    names = ["orders", "orders.create", "a b", "*", ">", "", "~", "~7e", "é", "a.b", "a~2eb"]
    tokens = [subjects.token(name) for name in names]
    assert len(set(tokens)) == len(tokens)
    for tok in tokens:
        assert tok and not set(tok) & set(". *>\t\r\n")
    assert subjects.token("orders") == "orders"


# -- against a server ------------------------------------------------------------------------------


async def test_publish_reaches_only_the_subscribers_of_its_key(nats_server: NatsServer) -> None:
    async with started(nats_server.url, 3) as [(a, _, a_in), (b, b_id, b_in), (c, _, c_in)]:
        await b.subscribe(["orders.create"])
        await a.subscribe(["orders.create"])
        await a.publish("orders.create", b"one")
        await a.unicast(b_id, b"marker")  # the same connection's order: behind the publish
        assert await b_in.wait_for(2) == [b"one", b"marker"]
        await a.broadcast(b"everyone")
        assert await c_in.wait_for(1) == [b"everyone"], "a node that did not subscribe got the publish"
        await b.unsubscribe(["orders.create"])
        await b.unsubscribe(["orders.create"])  # idempotent
        await c.subscribe(["other"])
        await a.publish("orders.create", b"two")
        await a.unicast(b_id, b"marker 2")
        assert await b_in.wait_for(4) == [b"one", b"marker", b"everyone", b"marker 2"]
        assert a_in.frames == [], "a node got its own publish or broadcast back"
        assert (a.stats()["interest_subscriptions"], b.stats()["interest_subscriptions"]) == (1, 0)


async def test_a_frame_over_the_servers_max_payload_raises_before_sending(nats_server: NatsServer) -> None:
    async with started(nats_server.url, 2) as [(a, _, _), (_, b_id, b_in)]:
        with pytest.raises(MessageTooLarge):
            await a.unicast(b_id, b"x" * (a.max_frame_size + 1))
        await a.unicast(b_id, b"after")
        assert await b_in.wait_for(1) == [b"after"]


@pytest.mark.parametrize("auth", ["user", "token"])
async def test_authentication_with_a_password_or_a_token(auth: str, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-pass-word"
    server = NatsServer(*(["--user", "bus", "--pass", secret] if auth == "user" else ["--auth", secret]))
    server.start()
    try:
        good = f"nats://bus:{secret}@127.0.0.1:{server.port}" if auth == "user" \
            else f"nats://127.0.0.1:{server.port}?token={secret}"
        bad = good.replace(secret, "wrong-" + secret[:4])
        with caplog.at_level(logging.DEBUG, logger="addrbus"):
            async with started(good, 2) as [(a, _, _), (_, b_id, b_in)]:
                await a.unicast(b_id, b"authenticated")
                assert await b_in.wait_for(1) == [b"authenticated"]
            # Refused credentials fail start() at once, not at connect_timeout (nats-py would retry forever).
            transport = from_url(bad + ("&" if "?" in bad else "?") + "connect_timeout=60")
            with pytest.raises(TransportError, match="refused the credentials") as info:
                await asyncio.wait_for(transport.start(new_node_id(), "ns", Inbox()), WAIT)
        texts = [str(info.value), caplog.text]
        assert not [text for text in texts if secret in text or "wrong-" in text]
    finally:
        server.stop()


async def test_a_missing_credentials_file_fails_start_clearly(nats_server: NatsServer) -> None:
    transport = from_url(f"{nats_server.url}?creds=/nonexistent/bus.creds")
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.start(new_node_id(), "ns", Inbox())


async def test_no_server_fails_start_within_connect_timeout() -> None:
    from tests.fixtures_redis import free_port

    loop = asyncio.get_running_loop()
    transport = from_url(f"nats://127.0.0.1:{free_port()}?connect_timeout=0.5")
    begin = loop.time()
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.start(new_node_id(), "ns", Inbox())
    assert loop.time() - begin < 5


async def test_sends_fail_fast_while_disconnected_and_work_after_the_server_is_back(fault_nats: NatsServer) -> None:
    async with started(fault_nats.url, 2) as [(a, _, _), (b, b_id, b_in)]:
        events = {(node, state): asyncio.Event() for node in "ab" for state in ("disconnected", "reconnected")}
        for name, transport in (("a", a), ("b", b)):
            transport.on_state(lambda state, name=name: (name, state) in events and events[name, state].set())
        fault_nats.kill()
        await asyncio.wait_for(events["a", "disconnected"].wait(), WAIT)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        with pytest.raises(TransportError, match="disconnected"):
            await a.unicast(b_id, b"lost")
        assert loop.time() - begin < 0.1
        fault_nats.restart()
        await asyncio.wait_for(asyncio.gather(events["a", "reconnected"].wait(), events["b", "reconnected"].wait()),
                               WAIT)
        assert a.stats()["reconnects"] == 1
        await a.unicast(b_id, b"back")
        assert await b_in.wait_for(1) == [b"back"]


async def test_the_bus_runs_on_nats_with_a_shared_key(nats_server: NatsServer) -> None:
    from addrbus import generate_key

    key = generate_key()
    service = EventBus(nats_server.url, namespace="sealed", shared_key=key)
    service.on("echo", lambda body: body)
    client = EventBus(nats_server.url, namespace="sealed", shared_key=key)
    async with service, client:
        await client.wait_for_handlers("echo", timeout=WAIT)
        assert await client.request("echo", "hello", timeout=WAIT) == "hello"


# -- NATS chooses the consumer ---------------------------------------------------------------------


async def _silently_gone(bus: EventBus) -> None:
    """Cut ``bus``'s connection without a goodbye: what a crash looks like to the others."""
    await bus._transport._nc.close()  # type: ignore[attr-defined]


async def _settled(client: EventBus, address: str) -> None:
    """Wait (bounded) until the server has seen the crash: a request sent as it happened may be lost with it."""
    from addrbus import RequestTimeout

    for _ in range(10):
        try:
            await client.request(address, -1, timeout=0.5)
            return
        except RequestTimeout:
            continue
    raise AssertionError("no request succeeded after the crash")


async def test_a_request_nobody_takes_fails_no_handlers_at_once(nats_server: NatsServer) -> None:
    """The table still lists a consumer that crashed; NATS's no-responders status fails the request at once."""
    service = EventBus(nats_server.url, namespace="nr", heartbeat=60.0, stop_timeout=0.5)
    service.on("echo", lambda body: body)
    client = EventBus(nats_server.url, namespace="nr", heartbeat=60.0)
    async with client:
        await service.start()
        try:
            await client.wait_for_handlers("echo", timeout=WAIT)
            assert await client.request("echo", 1, timeout=WAIT) == 1
            await _silently_gone(service)
            assert client.nodes().get(service.node_id), "the client already forgot the service"
            from addrbus import NoHandlers, RequestTimeout

            loop = asyncio.get_running_loop()
            took = None
            for _ in range(10):  # bounded: a request sent as the server dropped the service is lost with it
                begin = loop.time()
                try:
                    await client.request("echo", 2, timeout=1.0)
                except NoHandlers:
                    took = loop.time() - begin
                    break
                except RequestTimeout:
                    continue
            assert took is not None and took < 0.5, took
            assert client.stats()["transport.no_responders"] == 1
        finally:
            await service.stop()


async def test_nats_routes_around_a_consumer_that_crashed(nats_server: NatsServer) -> None:
    """Two consumers, one crashes: every later request and send reaches the other, none waits for a timeout."""
    buses = [EventBus(nats_server.url, namespace="around", heartbeat=60.0, stop_timeout=0.5) for _ in range(3)]
    one, two, client = buses
    got = {"one": 0, "two": 0}
    one.on("work", lambda n: got.__setitem__("one", got["one"] + 1) or n)
    two.on("work", lambda n: got.__setitem__("two", got["two"] + 1) or n)
    for bus in buses:
        await bus.start()
    try:
        await client.wait_for_handlers("work", 2, timeout=WAIT)
        await _silently_gone(one)
        await _settled(client, "work")
        before = got["one"]
        for n in range(50):
            assert await client.request("work", n, timeout=2.0) == n
        assert got["one"] == before and got["two"] >= 50
    finally:
        for bus in buses:
            await bus.stop()


async def test_a_missing_tls_file_is_named_in_the_error(tmp_path: Any) -> None:
    missing = tmp_path / "no-such-ca.pem"
    transport = from_url(f"tls://127.0.0.1:4443?ca_certs={missing}&connect_timeout=1")
    with pytest.raises(TransportError, match="ca_certs=.*no-such-ca.pem"):
        await transport.start(new_node_id(), "ns", Inbox())
