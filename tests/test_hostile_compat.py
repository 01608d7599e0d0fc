"""Issue 12, two found by other libraries' test suites: ``Message[None]``; autobus's plain classes and key command.

Each test asserts the behaviour the issue asks for, on every transport it
applies to. Those that fail on today's code carry ``xfail(strict=True)``: the
fix flips them to passing, and the strict mark then asks for its own removal.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from addrbus import Client, EventBus, Message, RecipientFailure
from tests._hostile import FOUR_WAYS, WAIT, url_of
from tests.conftest import unique


@pytest.fixture(params=FOUR_WAYS)
def url(request: pytest.FixtureRequest) -> str:
    """Return a URL the buses of one test share."""
    return url_of(request)


# -- Message[None]: an address that carries no body ------------------------------------------------


@pytest.mark.parametrize("where", ["remote", "local"])
async def test_a_handler_of_message_none_takes_requests_without_a_body(
    url: str, make_bus: Callable[..., EventBus], address: str, where: str
) -> None:
    """``msg: Message[None]`` means "no body": a request without one is handled, a request with one is refused."""
    namespace = unique("ns")
    responder = make_bus(url, namespace=namespace, startup_wait=0.05)
    requester = responder if where == "local" else make_bus(url, namespace=namespace, startup_wait=0.05)

    async def tick(msg: Message[None]) -> str:
        return f"no body: {msg.body!r}"

    responder.consumer(address, tick)
    await responder.start()
    await requester.start()
    await requester.wait_for_handlers(address, 1, timeout=WAIT)
    assert await requester.request(address, timeout=WAIT) == "no body: None"
    with pytest.raises(RecipientFailure) as refused:
        await requester.request(address, {"a": 1}, timeout=WAIT)
    assert refused.value.code == 422


# -- autobus: any class dict(obj) rebuilds, over every transport ------------------------------------


class Point:
    """A plain class, as autobus's README allows: ``dict(obj)`` gives the constructor's keyword arguments."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __iter__(self) -> Iterator[tuple[str, int]]:
        yield "x", self.x
        yield "y", self.y


@pytest.mark.parametrize("style", ["async", "sync"])
async def test_an_autobus_event_of_a_plain_class_reaches_its_subscriber(url: str, style: str) -> None:
    """An event of a plain class (not a model) is published and rebuilt with ``Point(**dict(event))``."""
    namespace = unique("ns")
    subscriber = Client(url, namespace=namespace)
    publisher = Client(url, namespace=namespace)
    loop = asyncio.get_running_loop()
    got: list[Point] = []
    arrived = asyncio.Event()

    def keep(point: Point) -> None:
        got.append(point)
        loop.call_soon_threadsafe(arrived.set)  # a plain handler runs in a worker thread

    async def keep_async(point: Point) -> None:
        keep(point)

    subscriber.subscribe(Point, keep_async if style == "async" else keep)
    try:
        await subscriber.start()
        await publisher.start()
        await publisher.bus.wait_for_handlers(f"autobus.event.{Point.__name__}", 1, timeout=WAIT)
        publisher.publish(Point(3, 4))
        async with asyncio.timeout(WAIT):
            await arrived.wait()
    finally:
        await publisher.stop()
        await subscriber.stop()
    assert [(type(p), p.x, p.y) for p in got] == [(Point, 3, 4)]


# -- autobus: the key command ----------------------------------------------------------------------


def test_python_m_addrbus_serializer_generate_prints_a_key() -> None:
    """``python -m addrbus.serializer generate`` prints one Fernet key a bus accepts, as autobus's command does."""
    done = subprocess.run(
        [sys.executable, "-m", "addrbus.serializer", "generate"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    lines = done.stdout.split()
    assert len(lines) == 1, f"expected one key, got {done.stdout!r}"
    key = lines[0]
    assert len(base64.urlsafe_b64decode(key)) == 32
    EventBus("memory://", shared_key=key)  # accepted as a shared key
