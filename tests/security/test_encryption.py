"""Encryption with ``shared_key``: what travels is sealed, fresh, once-only, and needs the key."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretBytes, SecretStr

from addrbus import ConfigError, EventBus, Message, NoHandlers
from addrbus._wire.sealing import MAGIC, generate_key
from addrbus.transports.nats import subjects
from tests.conftest import unique
from tests.security._harness import (
    WAIT,
    Capture,
    MemoryNet,
    NatsNet,
    Net,
    Recorder,
    RedisNet,
    UdpNet,
    counted,
    eventually,
    frame,
    opened,
    sealed,
)

CANARY_BODY = "canary-body-7f3a9c"
CANARY_REPLY = "canary-reply-51d0e2"
CANARY_HEADER = "canary-header-c4b8aa"
CANARY_HEADER_NAME = "x-canary-name-93e1"
CANARIES = (CANARY_BODY, CANARY_REPLY, CANARY_HEADER, CANARY_HEADER_NAME, "canary-addr")
_TOKEN = re.compile(rb"[A-Za-z0-9_-]+={0,2}")


def bus(make_bus: Callable[..., EventBus], net: Net, **options: Any) -> EventBus:
    options.setdefault("startup_wait", 0.05)
    return make_bus(net.url(), **options)


@asynccontextmanager
async def conversation(net: Net, server: EventBus, client: EventBus, address: str) -> AsyncIterator[Capture]:
    """Capture a request, a send and a publish between two buses, every part carrying a canary."""
    delivered: list[Any] = []

    @server.consumer(address)
    async def handle(msg: Message[Any]) -> str:
        delivered.append(msg.body)
        assert msg.headers[CANARY_HEADER_NAME] == CANARY_HEADER
        return CANARY_REPLY

    await server.start()
    await client.start()
    await client.wait_for_handlers(address, 1, timeout=WAIT)
    # Captured once both run: a Redis pattern subscriber started earlier would be
    # counted among the receivers of each hello, and each start would wait for its answer.
    async with net.capture() as capture:
        # A registration now is announced with every address, the canary's included.
        server.on(f"{address}.late", lambda body: body)
        await client.wait_for_handlers(f"{address}.late", 1, timeout=WAIT)
        headers = {CANARY_HEADER_NAME: CANARY_HEADER}
        body = {"secret": CANARY_BODY}
        assert await client.request(address, body, headers=headers, timeout=WAIT) == CANARY_REPLY
        await client.send(address, body, headers=headers)
        await client.publish(address, body, headers=headers)
        await eventually(lambda: len(delivered) == 3, "three deliveries")
    yield capture


async def test_nothing_that_routes_or_means_anything_travels_in_clear(
    net: Net, make_bus: Callable[..., EventBus]
) -> None:
    key = generate_key()
    namespace = unique("ns-canary")
    address = unique("canary-addr")
    server = bus(make_bus, net, namespace=namespace, shared_key=key)
    client = bus(make_bus, net, namespace=namespace, shared_key=SecretStr(key))
    async with conversation(net, server, client, address) as capture:
        pass
    assert len(capture.units) >= 5  # state, request, reply, send, publish
    plaintexts = []
    for unit in capture.units:
        for canary in (*CANARIES, address):
            assert canary.encode() not in unit.raw, f"{canary!r} travels in clear on {net.name}"
        # The payload is the token and nothing else: magic, then url-safe base64.
        assert unit.payload.startswith(MAGIC)
        assert _TOKEN.fullmatch(unit.payload[len(MAGIC) :])
        # What stays outside is only what the transport needs to deliver.
        outside = unit.raw.replace(unit.payload, b"")
        if isinstance(net, UdpNet):
            assert len(outside) == 21 + len(namespace)  # magic, kind, sender, destination, namespace
        elif isinstance(net, RedisNet):
            # The channel (namespace, then a node id, or the 22-character digest a publish goes
            # out under: 16 bytes of keyed hash), a space, the sender id.
            assert outside.startswith(b"addrbus:")
            assert len(outside) <= len(f"addrbus:{len(namespace)}:{namespace}:a:") + 22 + 1 + 8
        elif isinstance(net, NatsNet):
            # The subject (namespace, then a node id or the digest a publish goes out under) and a space.
            assert outside.startswith(b"addrbus.")
            assert len(outside) <= len(f"addrbus.{subjects.token(namespace)}.a.") + 22 + 1
        plain = opened(key, unit.payload)
        assert plain is not None
        plaintexts.append(plain)
    # Positive control: the canaries were in what was captured, inside the tokens.
    inside = b"".join(plaintexts)
    for canary in (*CANARIES, address, namespace):
        assert canary.encode() in inside


async def test_cleartext_capture_shows_the_canaries(net: Net, make_bus: Callable[..., EventBus]) -> None:
    # The control experiment: without a key the same capture does see them, so
    # the test above would notice a frame that escaped sealing.
    namespace = unique("ns-clear")
    address = unique("canary-addr")
    server, client = bus(make_bus, net, namespace=namespace), bus(make_bus, net, namespace=namespace)
    async with conversation(net, server, client, address) as capture:
        pass
    seen = b"".join(unit.raw for unit in capture.units)
    for canary in (*CANARIES, address):
        assert canary.encode() in seen


async def test_node_without_the_key_can_neither_read_nor_inject(
    net: Net, make_bus: Callable[..., EventBus], address: str
) -> None:
    key = generate_key()
    namespace = unique("ns")
    server = bus(make_bus, net, namespace=namespace, shared_key=key)
    client = bus(make_bus, net, namespace=namespace, shared_key=key)
    seen = Recorder()
    server.on(address, seen.handler)
    await server.start()
    await client.start()
    await client.wait_for_handlers(address, 1, timeout=WAIT)
    keyless = bus(make_bus, net, namespace=namespace)
    stranger = bus(make_bus, net, namespace=namespace, shared_key=generate_key())
    # Started together: each waits (in vain) for the keyed nodes to answer its hello.
    await asyncio.gather(keyless.start(), stranger.start())
    for outsider in (keyless, stranger):
        with pytest.raises(NoHandlers):
            await outsider.request(address, "hi", timeout=WAIT)
        assert set(outsider.nodes()) == {outsider.node_id}
    assert set(server.nodes()) == {server.node_id, client.node_id}
    # Injection by hand: a well-formed cleartext frame (no downgrade), and one sealed with another key.
    await net.inject(server, frame(namespace, address, "clear"))
    await net.inject(server, sealed(generate_key(), frame(namespace, address, "wrong key")))
    assert await client.request(address, "legit", timeout=WAIT) == "ok"
    assert seen == ["legit"]
    drops = counted(server)
    assert drops.get("cleartext", 0) >= 2  # the keyless node's hello, and the injected frame
    assert drops.get("invalid", 0) >= 2  # the stranger's hello, and the injected frame
    assert counted(keyless).get("bad_magic", 0) >= 1  # it cannot even parse what the others send
    assert counted(stranger).get("invalid", 0) >= 1


async def test_tokens_outside_the_time_window_are_rejected(
    net: Net, make_bus: Callable[..., EventBus], address: str
) -> None:
    key = generate_key()
    namespace = unique("ns")
    default = bus(make_bus, net, namespace=namespace, shared_key=key)
    short = bus(make_bus, net, namespace=namespace, shared_key=key, replay_ttl=5.0)
    seen = {"default": Recorder(), "short": Recorder()}
    default.on(address, seen["default"].handler)
    short.on(address, seen["short"].handler)
    await default.start()
    await short.start()
    for age, body in ((61, "61 s old"), (10, "10 s old"), (2, "2 s old"), (-60, "60 s ahead"), (0, "marker")):
        await net.inject(default, sealed(key, frame(namespace, address, body), age=age))
    await eventually(lambda: "marker" in seen["default"] and "marker" in seen["short"], "the markers")
    # The default TTL is 60 s; replay_ttl=5 reaches the sealer of the second bus.
    assert seen["default"] == ["10 s old", "2 s old", "marker"]
    assert seen["short"] == ["2 s old", "marker"]
    assert counted(default) == {"expired": 1, "future": 1}
    assert counted(short) == {"expired": 2, "future": 1}


async def test_replayed_token_is_executed_at_most_once(
    net: Net, make_bus: Callable[..., EventBus], address: str
) -> None:
    key = generate_key()
    namespace = unique("ns")
    server = bus(make_bus, net, namespace=namespace, shared_key=key)
    client = bus(make_bus, net, namespace=namespace, shared_key=key)
    runs = Recorder()
    server.on(address, runs.handler)
    server.on("ping", lambda body: body)
    await server.start()
    await client.start()
    await client.wait_for_handlers(address, 1, timeout=WAIT)
    async with net.capture() as capture:
        await client.send(address, "transfer 100")
        await client.publish(address, "broadcast 1")
        await eventually(lambda: runs == ["transfer 100", "broadcast 1"], "the deliveries")
    captured = [u for u in capture.units if b'"transfer 100"' in (opened(key, u.payload) or b"")]
    published = [u for u in capture.units if b'"broadcast 1"' in (opened(key, u.payload) or b"")]
    assert len(captured) == len(published) == 1
    for _ in range(3):
        await net.replay(captured[0])
        await net.replay(published[0])
    await eventually(lambda: counted(server).get("replay", 0) == 6, "six replays")
    assert await client.request("ping", "sync", timeout=WAIT) == "sync"
    assert runs == ["transfer 100", "broadcast 1"]
    # The memory of opened tokens outlives a restart of the bus (a new node id, the same sealer).
    await server.stop()
    await server.start()
    await net.inject(server, published[0].payload)
    await net.inject(server, sealed(key, frame(namespace, address, "marker")))
    await eventually(lambda: "marker" in runs, "the marker")
    assert runs == ["transfer 100", "broadcast 1", "marker"]
    assert counted(server).get("replay") == 7


def sealed_of_size(key: str, namespace: str, address: str, minimum: int) -> bytes:
    """Return a real token of a little more than ``minimum`` bytes."""
    size = minimum * 3 // 4 - 512
    while True:
        token = sealed(key, frame(namespace, address, "x" * size))
        if len(token) > minimum:
            return token
        size += 16


@pytest.mark.parametrize("transport", ["udp", "redis"])
async def test_size_is_checked_before_decryption(
    request: pytest.FixtureRequest, make_bus: Callable[..., EventBus], address: str, transport: str
) -> None:
    key = generate_key()
    if transport == "udp":
        from tests.fixtures_netns import require_private_netns

        require_private_netns()
        net: Net = UdpNet()
        url = net.url()
    else:
        net = RedisNet(request.getfixturevalue("redis_server"))
        url = net.url(max_frame_size="65536")
    try:
        target = make_bus(url, namespace=unique("ns"), shared_key=key, startup_wait=0.05)
        seen = Recorder()
        target.on(address, seen.handler)
        await target.start()
        limit = 65536 if transport == "redis" else net.max_payload
        # A real token, padded past the limit: valid base64, but it is never looked at.
        big = sealed_of_size(key, target.namespace, address, limit)
        assert limit < len(big) < limit + 200
        await net.inject(target, big)
        await net.inject(target, sealed(key, frame(target.namespace, address, "marker")))
        await eventually(lambda: seen == ["marker"], "the marker")
        stats = target.stats()
        assert stats["dropped.too_large"] == 1
        # The sealer never saw it: its only work was the marker.
        assert stats["crypto.opened"] >= 1
        assert all(stats[f"crypto.{r}"] == 0 for r in ("too_large", "malformed", "invalid"))
    finally:
        await net.aclose()


async def test_key_forms_interoperate(make_bus: Callable[..., EventBus], address: str) -> None:
    key = generate_key()
    net = MemoryNet()
    forms = [key, key.encode(), SecretStr(key), SecretBytes(key.encode()), [key], [SecretStr(key)]]
    buses = [make_bus(net.url(), shared_key=form) for form in forms]
    for i, b in enumerate(buses):
        b.on(f"{address}.{i}", lambda body, i=i: i)
        await b.start()
    for b in buses:
        for i in range(len(buses)):
            assert await b.request(f"{address}.{i}", None, timeout=WAIT) == i


def _chain_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(getattr(exc, "__dict__", {}))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-2],  # truncated
        lambda k: k[:-4] + "!!!=",  # not base64
        lambda k: k.encode()[:30],  # short bytes
        lambda k: [generate_key(), k[:-1]],  # one bad key among good ones
        lambda k: SecretStr(k[1:]),
    ],
    ids=["truncated", "not-base64", "short-bytes", "bad-in-list", "secretstr"],
)
def test_bad_key_errors_never_show_the_key(mangle: Callable[[str], Any]) -> None:
    key = generate_key()
    bad = mangle(key)
    with pytest.raises(ConfigError) as info:
        EventBus("memory://", shared_key=bad)
    text = _chain_text(info.value)
    for secret in (key, key[:-2], key[:-4], key[1:], key[:-1], key[:20]):
        assert secret not in text
    assert "generate_key" in str(info.value) or "keygen" in str(info.value)


async def test_keys_never_in_reprs_or_stats(make_bus: Callable[..., EventBus]) -> None:
    old, new = generate_key(), generate_key()
    b = make_bus("memory://?serialize=1", shared_key=[new, SecretStr(old)])
    await b.start()
    texts = [repr(b), str(b), repr(b._wire._sealer), repr(b.stats()), repr(vars(b._wire))]
    for text in texts:
        for key in (old, new):
            assert key not in text
            assert base64.urlsafe_b64decode(key).hex() not in text


def test_missing_cryptography_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setitem(sys.modules, "cryptography", None)  # what a failed import leaves behind
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ConfigError, match=re.escape("pip install 'addrbus[crypto]'")):
        EventBus("memory://?serialize=1", shared_key=key)
    # Without a key, cryptography is never needed.
    EventBus("memory://?serialize=1")
