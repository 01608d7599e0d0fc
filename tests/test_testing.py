"""addrbus.testing: the pytest plugin's fixtures and the Recorder, used as users' tests use them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Any

import pytest

from addrbus import EventBus
from addrbus.testing import Call, Recorder

pytest_plugins = ["pytester"]

WAIT = 5.0

# The bus calls observers once the lead adds the hook to _bus.py (see Recorder's docstring).
HOOKED = callable(getattr(EventBus(), "add_observer", None))
needs_hook = pytest.mark.xfail(not HOOKED, reason="EventBus has no _observers hook yet", raises=TypeError)


class Address(str, Enum):
    CREATED = "users.created"


class Hook:
    """Stands for a bus: holds observers and calls them as publish/send/request will."""

    def __init__(self) -> None:
        self._observers: list[Callable[[str, str, Any, dict[str, str]], None]] = []

    def add_observer(self, observer: Callable[[str, str, Any, dict[str, str]], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def emit(self, kind: str, address: str, body: Any, headers: dict[str, str] | None = None) -> None:
        for observer in list(self._observers):
            observer(kind, address, body, headers or {})


def recorder_on(hook: Hook, *addresses: Any) -> Recorder:
    return Recorder(hook, *addresses)  # type: ignore[arg-type]


# -- Recorder ---------------------------------------------------------------------------


def test_recorder_keeps_calls_by_kind_and_address() -> None:
    hook = Hook()
    rec = recorder_on(hook)
    hook.emit("publish", "users.created", {"id": 1}, {"trace": "t1"})
    hook.emit("send", "mail.out", "hello")
    hook.emit("request", "users.create", {"name": "ada"})
    hook.emit("publish", "users.created", {"id": 2})
    assert rec.published() == [{"id": 1}, {"id": 2}]
    assert rec.published(Address.CREATED) == [{"id": 1}, {"id": 2}]
    assert rec.published("mail.out") == []
    assert rec.sent("mail.out") == ["hello"]
    assert rec.requested() == [{"name": "ada"}]
    assert rec.calls[0] == Call("publish", "users.created", {"id": 1}, {"trace": "t1"})
    rec.clear()
    assert rec.calls == []


def test_recorder_filters_addresses_and_stops_on_close() -> None:
    hook = Hook()
    with recorder_on(hook, Address.CREATED) as rec:
        hook.emit("publish", "users.created", 1)
        hook.emit("publish", "users.deleted", 2)
    hook.emit("publish", "users.created", 3)
    assert rec.published() == [1]
    assert hook._observers == []
    rec.close()  # twice is fine


async def test_wait_for_returns_once_enough_calls_are_recorded() -> None:
    hook = Hook()
    rec = recorder_on(hook)
    loop = asyncio.get_running_loop()
    loop.call_soon(hook.emit, "send", "jobs", 1)
    loop.call_soon(hook.emit, "publish", "jobs", 2)
    loop.call_soon(hook.emit, "send", "jobs", 3)
    calls = await rec.wait_for("send", "jobs", count=2, timeout=WAIT)
    assert [c.body for c in calls] == [1, 3]
    assert await rec.wait_for(count=3, timeout=WAIT) == rec.calls  # already there: no wait


async def test_wait_for_times_out_saying_what_it_saw() -> None:
    rec = recorder_on(Hook())
    with pytest.raises(TimeoutError, match="0 of 1 publish"):
        await rec.wait_for("publish", "nowhere", timeout=0.01)
    with pytest.raises(ValueError, match="kind"):
        await rec.wait_for("pub")


def test_a_bus_without_the_hook_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="_observers"):
        Recorder(object())  # type: ignore[arg-type]


@needs_hook
async def test_recorder_sees_what_a_real_bus_does(make_bus: Callable[..., EventBus], address: str) -> None:
    bus = make_bus("memory://?serialize=1")
    bus.on(address, lambda n: n * 2)
    await bus.start()
    with Recorder(bus) as rec:
        await bus.publish(address, 1, headers={"k": "v"})
        await bus.send(address, 2)
        assert await bus.request(address, 3, timeout=WAIT) == 6
    await bus.publish(address, 4)  # after close: not recorded
    assert rec.calls == [
        Call("publish", address, 1, {"k": "v"}),
        Call("send", address, 2, {}),
        Call("request", address, 3, {}),
    ]


# -- the pytest plugin --------------------------------------------------------------------

PLUGIN_ARGS = ("-p", "anyio.pytest_plugin", "-p", "addrbus.testing", "-q")

BUS_TESTS = """
import pytest
from addrbus import EventBus

seen = []

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_bus_is_started_and_serializes(bus):
    assert isinstance(bus, EventBus) and bus.running
    assert bus.url == "memory://?serialize=1"

    def double(n: int) -> int:
        return n * 2

    bus.on("double", double)
    assert await bus.request("double", "21", timeout=5) == 42  # "21" became an int: validated
    seen.append(bus)

def test_the_bus_was_stopped_after_the_test():
    assert seen and not seen[0].running
"""

RECORDER_TESTS = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_recorder(bus, recorder):
    bus.on("users.created", lambda user: None)
    await bus.publish("users.created", {"id": 1})
    assert recorder.published("users.created") == [{"id": 1}]
"""


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # Load exactly the plugins named, whether or not addrbus's entry point is installed.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def test_plugin_bus_fixture(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(BUS_TESTS)
    result = isolated.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=2)


@pytest.mark.xfail(not HOOKED, reason="EventBus has no _observers hook yet", strict=True)
def test_plugin_recorder_fixture(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(RECORDER_TESTS)
    result = isolated.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=1)
