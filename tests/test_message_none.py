"""``Message[None]``: an address that carries no body, on every transport.

A handler annotated ``msg: Message[None]`` (as in TinyBus's own test suite) takes
requests, sends and publishes without a body, and gets ``msg.body is None``. A body
sent there is a caller's mistake: a request gets ``RecipientFailure`` 422 that says
no body was expected, as any body that fails a handler's type does. (A request
with and without a body, locally and remotely, is ``tests/test_hostile_compat.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from addrbus import EventBus, Message, RecipientFailure
from tests._hostile import FOUR_WAYS, url_of
from tests.conftest import unique

WAIT = 10.0  # seconds: a bound on what takes milliseconds

@pytest.fixture(params=FOUR_WAYS)
def url(request: pytest.FixtureRequest) -> str:
    """Return a URL the buses of one test share."""
    return url_of(request)


async def pair(url: str, make_bus: Callable[..., EventBus], where: str) -> tuple[EventBus, EventBus]:
    """Return (responder, requester), one bus or two on ``url``, not started."""
    namespace = unique("ns")
    responder = make_bus(url, namespace=namespace, startup_wait=0.05)
    requester = responder if where == "local" else make_bus(url, namespace=namespace, startup_wait=0.05)
    return responder, requester


@pytest.mark.parametrize("where", ["local", "remote"])
@pytest.mark.parametrize("body", [{"a": 1}, 0, "", [], False])
async def test_message_none_refuses_a_body_with_422_saying_none_was_expected(
    url: str, make_bus: Callable[..., EventBus], address: str, where: str, body: object
) -> None:
    responder, requester = await pair(url, make_bus, where)
    called: list[object] = []

    @responder.consumer(address)
    async def ping(msg: Message[None]) -> str:
        called.append(msg.body)
        return "pong"

    await responder.start()
    await requester.start()
    await requester.wait_for_handlers(address, 1, timeout=WAIT)
    with pytest.raises(RecipientFailure) as refused:
        await requester.request(address, body, timeout=WAIT)
    assert refused.value.code == 422
    assert "no body expected" in str(refused.value)
    assert called == []
    assert await requester.request(address, timeout=WAIT) == "pong"  # the address still serves


async def test_message_none_takes_sends_and_publishes_without_a_body(
    url: str, make_bus: Callable[..., EventBus], address: str
) -> None:
    responder, sender = await pair(url, make_bus, "remote")
    got: list[tuple[str, object]] = []
    both = asyncio.Event()

    async def record(kind: str, msg: Message[None]) -> None:
        got.append((kind, msg.body))
        if len(got) == 2:
            both.set()

    @responder.consumer(address)
    async def consumed(msg: Message[None]) -> None:
        await record("send", msg)

    @responder.on(address + ".event")
    async def heard(msg: Message[None]) -> None:
        await record("publish", msg)

    await responder.start()
    await sender.start()
    await sender.wait_for_handlers(address, 1, timeout=WAIT)
    await sender.wait_for_handlers(address + ".event", 1, timeout=WAIT)
    await sender.send(address)
    await sender.publish(address + ".event")
    async with asyncio.timeout(WAIT):
        await both.wait()
    assert sorted(got) == [("publish", None), ("send", None)]


def test_a_plain_none_annotation_is_the_same_as_message_none() -> None:
    """``def h(body: None)`` and ``def h(msg: Message[None])`` both mean: no body."""
    from addrbus._core.handlers import PASS_BODY, PASS_MESSAGE, inspect_handler

    def plain(body: None) -> None: ...
    def message(msg: Message[None]) -> None: ...

    (plain_mode, plain_spec), (message_mode, message_spec) = (
        inspect_handler(plain, True, None),
        inspect_handler(message, True, None),
    )
    assert (plain_mode, message_mode) == (PASS_BODY, PASS_MESSAGE)
    assert plain_spec.tp is message_spec.tp is type(None)
