"""Interceptors: outbound hooks see every call and add headers, inbound hooks wrap every handler run."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

import pytest

from addrbus import EventBus, Message, NoHandlers, Outcome, Outgoing, RecipientFailure, RequestTimeout
from tests.conftest import unique

WAIT = 5.0
current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")


class Tape:
    """An interceptor that records what its hooks and finishers see, under a name."""

    def __init__(self, name: str, log: list[Any], headers: dict[str, str] | None = None) -> None:
        self.name, self.log, self.headers = name, log, headers or {}
        self.outcomes: list[tuple[str, Outcome]] = []

    def outbound(self, call: Outgoing) -> Callable[[Outcome], None]:
        self.log.append((self.name, "out", call.kind, call.address, call.body, dict(call.headers), call.node))
        call.headers.update(self.headers)
        return lambda outcome: self.outcomes.append((f"out-{call.kind}", outcome))

    def inbound(self, message: Message[Any]) -> Callable[[Outcome], None]:
        self.log.append((self.name, "in", message.address, message.body, dict(message.headers)))
        return lambda outcome: self.outcomes.append(("in", outcome))


async def test_outbound_hooks_see_every_call_and_their_headers_travel(make_bus: Callable[..., EventBus]) -> None:
    hub = unique("hub")
    server, client = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    seen: list[Message[Any]] = []
    got = asyncio.Event()

    @server.consumer("ic.ask")
    async def ask(msg: Message[int]) -> int:
        seen.append(msg)
        return msg.body + 1

    @server.consumer("ic.news")
    async def news(msg: Message[str]) -> None:
        seen.append(msg)
        got.set()

    log: list[Any] = []
    tape = Tape("a", log, {"trace": "t1"})
    async with server, client:
        await client.wait_for_handlers("ic.news", timeout=WAIT)
        client.add_interceptor(tape)
        assert await client.request("ic.ask", 1, headers={"mine": "x"}, timeout=WAIT) == 2
        await client.publish("ic.news", "hello")
        await asyncio.wait_for(got.wait(), WAIT)
        got.clear()
        await client.send("ic.news", "again", node=server.node_id)
        await asyncio.wait_for(got.wait(), WAIT)
    assert [entry[2:] for entry in log] == [
        ("request", "ic.ask", 1, {"mine": "x"}, None),
        ("publish", "ic.news", "hello", {}, None),
        ("send", "ic.news", "again", {}, server.node_id),
    ]
    assert [m.headers for m in seen] == [{"mine": "x", "trace": "t1"}, {"trace": "t1"}, {"trace": "t1"}]
    kinds = [kind for kind, _ in tape.outcomes]
    assert kinds == ["out-request", "out-publish", "out-send"]
    request_outcome = tape.outcomes[0][1]
    assert request_outcome.error is None and request_outcome.result == 2 and request_outcome.duration > 0


async def test_finishers_get_the_failure_of_the_call(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    @bus.consumer("ic.boom")
    async def boom(n: int) -> int:
        raise ValueError("no")

    release = asyncio.Event()

    @bus.consumer("ic.slow")
    async def slow(n: int) -> None:
        await asyncio.wait_for(release.wait(), WAIT)

    tape = Tape("a", [])
    bus.add_interceptor(tape)
    async with bus:
        with pytest.raises(NoHandlers):
            await bus.request("ic.nobody", 1, timeout=WAIT)
        with pytest.raises(RecipientFailure):
            await bus.request("ic.boom", 1, timeout=WAIT)
        with pytest.raises(RequestTimeout):
            await bus.request("ic.slow", 1, timeout=0.05)
        release.set()
        with pytest.raises(NoHandlers):
            await bus.send("ic.nobody", 1)
    errors = [(kind, type(outcome.error)) for kind, outcome in tape.outcomes]
    assert ("out-request", NoHandlers) in errors
    assert ("out-request", RecipientFailure) in errors
    assert ("out-request", RequestTimeout) in errors
    assert ("out-send", NoHandlers) in errors
    timed_out = next(o for k, o in tape.outcomes if k == "out-request" and isinstance(o.error, RequestTimeout))
    assert timed_out.duration >= 0.05
    handled = [o for k, o in tape.outcomes if k == "in"]
    assert any(isinstance(o.error, ValueError) for o in handled)  # the handler's own error, on the inbound side


async def test_inbound_hooks_see_a_message_whatever_the_handler_takes(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    results: list[Any] = []
    done = asyncio.Event()

    @bus.on("ic.body")
    async def body_only(n: int) -> int:
        return n * 10

    @bus.on("ic.nothing")
    async def nothing() -> None:
        done.set()

    @bus.on("ic.plain")
    def plain(n: int) -> int:  # a worker thread
        results.append(current.get())
        return n

    @bus.on("icp.*")
    async def pattern(msg: Message[Any]) -> None:
        results.append(("pattern", msg.address))
        done.set()

    log: list[Any] = []
    tape = Tape("a", log)

    class Context:
        def inbound(self, message: Message[Any]) -> Callable[[Outcome], None]:
            token = current.set(f"span-of-{message.address}")
            return lambda outcome: current.reset(token)

    bus.add_interceptor(tape)
    bus.add_interceptor(Context())
    async with bus:
        assert await bus.request("ic.body", 4, timeout=WAIT) == 40
        await bus.publish("ic.nothing")
        await asyncio.wait_for(done.wait(), WAIT)
        assert await bus.request("ic.plain", 3, timeout=WAIT) == 3
        done.clear()
        await bus.publish("icp.x", "p")
        await asyncio.wait_for(done.wait(), WAIT)
        await bus.drain(WAIT)
    inbound = [entry for entry in log if entry[1] == "in"]
    assert ("a", "in", "ic.body", 4, {}) in inbound
    assert ("a", "in", "ic.nothing", None, {}) in inbound
    assert ("a", "in", "ic.plain", 3, {}) in inbound
    assert "span-of-ic.plain" in results  # a context an inbound hook sets is the handler's, in its thread too
    assert ("pattern", "icp.x") in results
    assert ("a", "in", "icp.x", "p", {}) in inbound
    body = next(o for k, o in tape.outcomes if k == "in" and o.result == 40)
    assert body.error is None and body.duration >= 0


async def test_hooks_run_in_order_and_finishers_in_reverse(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()
    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def outbound(self, call: Outgoing) -> Callable[[Outcome], None]:
            order.append(f"out {self.name}")
            return lambda outcome: order.append(f"done {self.name}")

    @bus.on("ic.order")
    async def handler(n: int) -> int:
        return n

    bus.add_interceptor(Named("first"))
    bus.add_interceptor(Named("second"))
    async with bus:
        await bus.request("ic.order", 1, timeout=WAIT)
    assert order == ["out first", "out second", "done second", "done first"]


async def test_a_raising_interceptor_is_logged_and_skipped(make_bus: Callable[..., EventBus],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    bus = make_bus()

    class Broken:
        def outbound(self, call: Outgoing) -> None:
            raise RuntimeError("hook broke")

        def inbound(self, message: Message[Any]) -> Callable[[Outcome], None]:
            def finish(outcome: Outcome) -> None:
                raise RuntimeError("finisher broke")
            return finish

    @bus.on("ic.broken")
    async def handler(n: int) -> int:
        return n + 1

    tape = Tape("after", [])
    bus.add_interceptor(Broken())
    bus.add_interceptor(tape)
    with caplog.at_level(logging.ERROR, logger="addrbus"):
        async with bus:
            assert await bus.request("ic.broken", 1, timeout=WAIT) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("interceptor hook" in m for m in messages)
    assert any("interceptor finisher" in m for m in messages)
    assert [k for k, _ in tape.outcomes] == ["in", "out-request"]  # the one after the broken one still ran


async def test_removing_an_interceptor_stops_its_hooks(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    @bus.on("ic.gone")
    async def handler(n: int) -> int:
        return n

    log: list[Any] = []
    remove = bus.add_interceptor(Tape("a", log))
    async with bus:
        await bus.request("ic.gone", 1, timeout=WAIT)
        assert len(log) == 2
        remove()
        remove()  # twice is harmless
        await bus.request("ic.gone", 2, timeout=WAIT)
        await bus.publish("ic.gone", 3)
        await bus.drain(WAIT)
    assert len(log) == 2


def test_an_object_without_hooks_is_refused() -> None:
    with pytest.raises(TypeError, match="outbound or an inbound"):
        EventBus().add_interceptor(object())


async def test_a_hook_adding_a_bad_header_fails_the_call(make_bus: Callable[..., EventBus]) -> None:
    bus = make_bus()

    class Bad:
        def outbound(self, call: Outgoing) -> None:
            call.headers["n"] = 1  # type: ignore[assignment]

    @bus.on("ic.bad")
    async def handler(n: int) -> int:
        return n

    bus.add_interceptor(Bad())
    async with bus:
        with pytest.raises(TypeError, match="strings"):
            await bus.request("ic.bad", 1, timeout=WAIT)
