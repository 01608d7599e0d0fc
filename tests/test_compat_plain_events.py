"""autobus's "any simple class": events that ``dict(obj)`` turns into their constructor's keyword arguments.

autobus's README: "any simple class will work, so long as you can call
``dict(obj)`` and get back a dict that you can pass as keyword args to the
constructor". Such an event goes out as ``dict(event)`` and each subscriber gets
``cls(**data)``, on every transport, beside pydantic events, which are unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from addrbus import Client, Event
from tests._hostile import FOUR_WAYS, url_of
from tests.conftest import unique

WAIT = 10.0  # seconds: a bound on what takes milliseconds

@pytest.fixture(params=FOUR_WAYS)
def url(request: pytest.FixtureRequest) -> str:
    """Return a URL the buses of one test share."""
    return url_of(request)


class Point:
    """Iterating gives (key, value) pairs."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[str, int]]:
        yield "x", self.x
        yield "y", self.y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (other.x, other.y) == (self.x, self.y)

    __hash__ = None  # type: ignore[assignment]


class Tags(dict[str, Any]):
    """A dict subclass: ``Tags(**data)`` is a Tags again."""


class Reading:
    """A mapping by ``keys()`` and ``__getitem__``, as ``dict()`` accepts."""

    def __init__(self, sensor: str, values: list[float], meta: dict[str, Any] | None = None) -> None:
        self.sensor, self.values, self.meta = sensor, values, meta

    def keys(self) -> list[str]:
        return ["sensor", "values", "meta"]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class Opened(Event):
    """A pydantic event, beside the plain ones."""

    door: int


class Inbox:
    """Events by class, appended from any thread; ``await inbox.holding(n)`` waits without polling."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def holding(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

    def of(self, cls: type) -> list[Any]:
        return [item for item in self.items if type(item) is cls]


EVENT_TYPES = (Point, Tags, Reading, Opened)


def subscribe_all(client: Client, inbox: Inbox, style: str) -> None:
    for event_type in EVENT_TYPES:
        if style == "async":

            async def keep(event: Any) -> None:
                inbox.add(event)

            client.subscribe(event_type, keep)
        else:
            client.subscribe(event_type, inbox.add)


def publish_all(client: Client) -> None:
    client.publish(Point(3, 4))
    client.publish(Tags(colour="red", size=2))
    client.publish(Reading("t1", [1.5, 2.0], {"unit": "C"}))
    client.publish(Opened(door=7))


def check(inbox: Inbox) -> None:
    assert inbox.of(Point) == [Point(3, 4)]
    assert inbox.of(Tags) == [Tags(colour="red", size=2)]
    [reading] = inbox.of(Reading)
    assert (reading.sensor, reading.values, reading.meta) == ("t1", [1.5, 2.0], {"unit": "C"})
    assert inbox.of(Opened) == [Opened(door=7)]
    assert len(inbox.items) == 4


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_plain_class_events_reach_another_client_rebuilt_by_their_class(url: str, style: str) -> None:
    namespace = unique("ns")
    subscriber, publisher = Client(url, namespace=namespace), Client(url, namespace=namespace)
    inbox = Inbox()
    subscribe_all(subscriber, inbox, style)
    try:
        await subscriber.start()
        await publisher.start()
        for event_type in EVENT_TYPES:
            await publisher.bus.wait_for_handlers(f"autobus.event.{event_type.__name__}", 1, timeout=WAIT)
        publish_all(publisher)
        await inbox.holding(4)
    finally:
        await publisher.stop()
        await subscriber.stop()
    check(inbox)


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_plain_class_events_reach_a_subscriber_of_the_same_client_as_copies(url: str, style: str) -> None:
    client = Client(url, namespace=unique("ns"))
    inbox = Inbox()
    subscribe_all(client, inbox, style)
    published = Point(1, 2)
    try:
        await client.start()
        publish_all(client)
        client.publish(published)
        await inbox.holding(5)
    finally:
        await client.stop()
    assert inbox.of(Point) == [Point(3, 4), Point(1, 2)]
    assert all(point is not published for point in inbox.of(Point))  # rebuilt, as autobus does


async def test_a_plain_event_dict_cannot_read_is_logged_and_later_events_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Opaque:
        """Neither pydantic nor ``dict()`` can read it."""

    url = f"memory://{unique('hub')}?serialize=1"
    subscriber, publisher = Client(url), Client(url)
    inbox = Inbox()
    subscriber.subscribe(Opaque, inbox.add)
    subscriber.subscribe(Point, inbox.add)
    await subscriber.start()
    await publisher.start()
    with caplog.at_level(logging.ERROR, logger="addrbus"):
        publisher.publish(Opaque())
        publisher.publish(Point(5, 6))
        await publisher.stop()
        await subscriber.stop()
    assert inbox.items == [Point(5, 6)]
    assert any("Opaque" in r.getMessage() for r in caplog.records)


async def test_a_plain_event_its_constructor_refuses_is_logged_and_the_subscriber_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"memory://{unique('hub')}?serialize=1"
    subscriber, publisher = Client(url), Client(url)
    inbox = Inbox()
    subscriber.subscribe(Point, inbox.add)
    await subscriber.start()
    await publisher.start()
    with caplog.at_level(logging.ERROR, logger="addrbus"):
        await publisher.bus.publish("autobus.event.Point", {"x": 1, "z": 2})  # no y: Point() raises
        publisher.publish(Point(7, 8))
        await inbox.holding(1)
        await publisher.stop()
        await subscriber.stop()
    assert inbox.items == [Point(7, 8)]
    assert any(r.exc_info for r in caplog.records)
