"""No key, no Redis password and no message content ever reaches a log record, even at DEBUG."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from addrbus import EventBus, Message, RecipientFailure, TransportError
from addrbus._wire.sealing import generate_key
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.fixtures_redis import RedisServer
from tests.security._harness import WAIT, Net, RedisNet, UdpNet, eventually, frame, sealed

CANARY_BODY = "canary-body-never-logged-0e5f"
WRONG_PASSWORD = "wr0ng-Pa55word-9c1d"


class Order(BaseModel):
    item: str
    quantity: int


def secrets_of(keys: list[str], password: str | None) -> list[str]:
    """Return every spelling of the secrets a log line could carry."""
    found = [CANARY_BODY, WRONG_PASSWORD]
    for key in keys:
        raw = base64.urlsafe_b64decode(key)
        found += [key, key.rstrip("="), repr(key.encode()), raw.hex(), repr(raw)[2:-1]]
        found += [key[:16], key[16:32]]  # halves of a key are secrets too
    if password:
        found.append(password)
    return found


def record_texts(record: logging.LogRecord) -> list[str]:
    texts = [str(record.msg), record.getMessage(), repr(record.args)]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    return texts


async def scenario(net: Net, make_bus: Callable[..., EventBus], keys: list[str], url: str) -> EventBus:
    """Run a bit of everything: requests, failures, junk, a restart; return the serving bus."""
    namespace = unique("ns")
    address = unique("orders")
    server = make_bus(url, namespace=namespace, shared_key=keys, startup_wait=0.05)
    client = make_bus(url, namespace=namespace, shared_key=keys[::-1], startup_wait=0.05)

    @server.consumer(address)
    async def place(msg: Message[Order]) -> str:
        if msg.body.quantity < 0:
            raise ValueError("negative quantity")
        return "placed"

    await server.start()
    await client.start()
    await client.wait_for_handlers(address, 1, timeout=WAIT)
    order = Order(item=CANARY_BODY, quantity=1)
    assert await client.request(address, order, headers={"x-note": CANARY_BODY}, timeout=WAIT) == "placed"
    await client.publish(address, order)
    with pytest.raises(RecipientFailure):
        await client.request(address, Order(item=CANARY_BODY, quantity=-1), timeout=WAIT)
    with pytest.raises(RecipientFailure):
        await client.request(address, {"item": 1, "quantity": CANARY_BODY}, timeout=WAIT)
    # Junk: cleartext, a wrong key, a stale token.
    await net.inject(server, frame(namespace, address, {"item": CANARY_BODY, "quantity": 1}))
    await net.inject(server, sealed(generate_key(), frame(namespace, address, CANARY_BODY)))
    await net.inject(server, sealed(keys[0], frame(namespace, address, CANARY_BODY), age=3600))
    await client.stop()
    await client.start()
    assert await client.request(address, order, timeout=WAIT) == "placed"
    stats = server.stats
    await eventually(lambda: all(stats().get(f"dropped.{r}") for r in ("cleartext", "invalid", "expired")), "drops")
    return server


async def test_udp_logs_hold_no_secret(
    make_bus: Callable[..., EventBus], caplog: pytest.LogCaptureFixture
) -> None:
    require_private_netns()
    caplog.set_level(logging.DEBUG, logger="addrbus")
    keys = [generate_key(), generate_key()]
    net = UdpNet()
    try:
        server = await scenario(net, make_bus, keys, net.url())
        # A datagram that is not even addrbus's: the transport's DEBUG line.
        net.sock.sendto(CANARY_BODY.encode(), (net.group, net.port))
        await eventually(lambda: server.stats()["transport.bad_frames"] >= 1, "the bad datagram")
    finally:
        await net.aclose()
    assert_clean(caplog, keys, None)


async def test_redis_logs_hold_no_secret(
    make_bus: Callable[..., EventBus], caplog: pytest.LogCaptureFixture, secret_redis: RedisServer
) -> None:
    caplog.set_level(logging.DEBUG, logger="addrbus")
    keys = [generate_key(), generate_key()]
    assert secret_redis.password
    net = RedisNet(secret_redis)
    try:
        await scenario(net, make_bus, keys, secret_redis.url)
        # A reconnect logs the server and the reason; neither may carry the password.
        watched = make_bus(secret_redis.url, namespace=unique("ns"), shared_key=keys)
        states: list[str] = []
        watched.on_transport_state(states.append)
        await watched.start()
        await net.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        await eventually(lambda: "reconnected" in states, "a reconnect")
        # A wrong password: the error and its log line name the server, not the password.
        # Retried for a second (start_timeout), each attempt logged: no line may carry either password.
        wrong = make_bus(secret_redis.url.replace(secret_redis.password, WRONG_PASSWORD), shared_key=keys,
                         start_timeout=1.0)
        with pytest.raises(TransportError) as info:
            await wrong.start()
        text = str(info.value) + repr(info.value) + repr(wrong)
        assert WRONG_PASSWORD not in text
        assert secret_redis.password not in repr(watched) + repr(watched.stats())
    finally:
        await net.aclose()
    assert_clean(caplog, keys, secret_redis.password)


def assert_clean(caplog: pytest.LogCaptureFixture, keys: list[str], password: str | None) -> None:
    records = [r for r in caplog.records if r.name.startswith("addrbus")]
    assert logging.getLogger("addrbus.transports").isEnabledFor(logging.DEBUG)
    assert any(r.levelno == logging.WARNING for r in records), "the junk was not reported"
    for record in caplog.records:
        for text in record_texts(record):
            for secret in secrets_of(keys, password):
                assert secret not in text, f"a secret in {record.name} {record.levelname}: {record.msg!r}"
