"""OpenTelemetry: spans for every message, their context carried in headers, linked across buses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from addrbus import EventBus, Message, NoHandlers, RecipientFailure
from addrbus.otel import TracingInterceptor
from tests.conftest import unique

WAIT = 5.0


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def named(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


@pytest.mark.redis
async def test_a_request_over_redis_is_one_trace_with_the_server_span_under_the_client_span(
        make_bus: Callable[..., EventBus], redis_server: Any,
        spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    ns = unique("ns")
    server, client = make_bus(str(redis_server.url), namespace=ns), make_bus(str(redis_server.url), namespace=ns)
    for bus in (server, client):
        bus.add_interceptor(TracingInterceptor(tracer_provider=provider))
    heard = asyncio.Event()

    @server.consumer("orders.create")
    async def create(msg: Message[dict[str, int]]) -> int:
        assert "traceparent" in msg.headers
        await server.publish("orders.created", msg.body["n"])  # a child of the server span
        return msg.body["n"]

    @client.on("orders.created")
    async def created(n: int) -> None:
        heard.set()

    async with server, client:
        await client.wait_for_handlers("orders.create", timeout=WAIT)
        await server.wait_for_handlers("orders.created", timeout=WAIT)
        assert await client.request("orders.create", {"n": 7}, timeout=WAIT) == 7
        await asyncio.wait_for(heard.wait(), WAIT)
        await client.drain(WAIT)
    finished = exporter.get_finished_spans()
    (client_span,) = named(finished, "request orders.create")
    (server_span,) = named(finished, "process orders.create")
    (publish_span,) = named(finished, "publish orders.created")
    (consumer_span,) = named(finished, "process orders.created")
    assert client_span.kind is SpanKind.CLIENT and server_span.kind is SpanKind.SERVER
    assert publish_span.kind is SpanKind.PRODUCER and consumer_span.kind is SpanKind.CONSUMER
    trace_ids = {s.context.trace_id for s in (client_span, server_span, publish_span, consumer_span)}
    assert len(trace_ids) == 1  # one trace across both buses
    assert server_span.parent is not None and server_span.parent.span_id == client_span.context.span_id
    assert server_span.parent.is_remote  # it came in the headers, over Redis
    assert publish_span.parent is not None and publish_span.parent.span_id == server_span.context.span_id
    assert consumer_span.parent is not None and consumer_span.parent.span_id == publish_span.context.span_id
    attrs = server_span.attributes or {}
    assert attrs["messaging.system"] == "addrbus"
    assert attrs["messaging.destination.name"] == "orders.create"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.message.conversation_id"]
    assert attrs["messaging.message.id"]
    assert (client_span.attributes or {})["messaging.operation.name"] == "request"
    assert client_span.status.status_code is StatusCode.UNSET


async def test_a_publish_to_two_listeners_gives_two_consumer_spans_under_one_producer_span(
        make_bus: Callable[..., EventBus], spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    hub = unique("hub")
    one, two = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    both = asyncio.Barrier(3)
    for bus in (one, two):
        bus.add_interceptor(TracingInterceptor(tracer_provider=provider))

        @bus.on("news")
        async def listener(text: str) -> None:
            await asyncio.wait_for(both.wait(), WAIT)

    async with one, two:
        await one.wait_for_handlers("news", 2, timeout=WAIT)
        await one.publish("news", "hi")
        await asyncio.wait_for(both.wait(), WAIT)
        await one.drain(WAIT)
        await two.drain(WAIT)
    finished = exporter.get_finished_spans()
    (producer,) = named(finished, "publish news")
    consumers = named(finished, "process news")
    assert len(consumers) == 2
    assert all(c.parent is not None and c.parent.span_id == producer.context.span_id for c in consumers)
    assert {c.kind for c in consumers} == {SpanKind.CONSUMER}
    assert producer.kind is SpanKind.PRODUCER


async def test_failures_are_recorded_with_their_failure_type(
        make_bus: Callable[..., EventBus], spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    bus = make_bus()
    bus.add_interceptor(TracingInterceptor(tracer_provider=provider))

    @bus.consumer("boom")
    async def boom(n: int) -> int:
        raise ValueError("bad input")

    async with bus:
        with pytest.raises(NoHandlers):
            await bus.request("nobody", 1, timeout=WAIT)
        with pytest.raises(RecipientFailure):
            await bus.request("boom", 1, timeout=WAIT)
    finished = exporter.get_finished_spans()
    (nobody,) = named(finished, "request nobody")
    assert nobody.status.status_code is StatusCode.ERROR
    assert (nobody.attributes or {})["error.type"] == "NO_HANDLERS"
    (client,) = named(finished, "request boom")
    assert (client.attributes or {})["error.type"] == "RECIPIENT_FAILURE"
    assert (client.attributes or {})["messaging.addrbus.remote_type"] == "ValueError"
    (server,) = named(finished, "process boom")
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "ValueError"
    assert any(event.name == "exception" for event in server.events)


async def test_without_a_provider_it_uses_the_global_one(make_bus: Callable[..., EventBus]) -> None:
    # No SDK set globally here: the API's no-op tracer; the interceptor must cost nothing but work.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    bus = make_bus()
    bus.add_interceptor(TracingInterceptor())

    @bus.consumer("echo")
    async def echo(msg: Message[int]) -> dict[str, str]:
        return msg.headers

    async with bus:
        assert await bus.request("echo", 1, timeout=WAIT) == {}  # a no-op span has no context to carry
