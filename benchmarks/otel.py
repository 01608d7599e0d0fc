"""What OpenTelemetry tracing costs per message, beside the same bus without it, in one run.

Run: ``.venv/bin/python benchmarks/otel.py [--quick]`` (needs ``addrbus[otel]`` and opentelemetry-sdk).

In-process request/reply (one requester) and publish to one listener, on a bus
with no interceptor, with ``TracingInterceptor`` on the API's no-op tracer (no SDK
configured), and with the SDK recording every span into an in-memory exporter
(cleared as it goes). Each figure is the median of interleaved runs; the cost is
printed in microseconds per message over the plain bus.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import add_uvloop_option, loop_name, run
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from addrbus import EventBus
from addrbus.otel import TracingInterceptor


def make_bus(mode: str, exporter: InMemorySpanExporter, provider: TracerProvider) -> EventBus:
    bus = EventBus(max_queue=1_000_000)
    if mode == "no-op tracer":
        bus.add_interceptor(TracingInterceptor())  # the API's global no-op: no SDK configured here
    elif mode == "SDK, every span":
        bus.add_interceptor(TracingInterceptor(tracer_provider=provider))
    return bus


async def requests(mode: str, count: int, exporter: InMemorySpanExporter, provider: TracerProvider) -> float:
    bus = make_bus(mode, exporter, provider)

    @bus.on("echo")
    async def echo(body: int) -> int:
        return body

    async with bus:
        start = time.perf_counter()
        for i in range(count):
            await bus.request("echo", i)
            if i % 1000 == 999:
                exporter.clear()
        elapsed = time.perf_counter() - start
    exporter.clear()
    return count / elapsed


async def publishes(mode: str, count: int, exporter: InMemorySpanExporter, provider: TracerProvider) -> float:
    bus = make_bus(mode, exporter, provider)
    done = asyncio.Event()
    got = [0]

    @bus.on("news")
    async def listener(body: int) -> None:
        got[0] += 1
        if got[0] == count:
            done.set()

    async with bus:
        start = time.perf_counter()
        for i in range(count):
            await bus.publish("news", i)
            if i % 1000 == 999:
                exporter.clear()
                await asyncio.sleep(0)  # let the listener keep up, as it would in a service
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - start
    exporter.clear()
    return count / elapsed


async def main(quick: bool) -> int:
    count = 5_000 if quick else 20_000
    runs = 3 if quick else 5
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    modes = ["plain", "no-op tracer", "SDK, every span"]
    print(f"{loop_name()} loop, {count:,} messages, median of {runs} interleaved runs")
    print(f"{'figure':<34} {'mode':<16} {'msgs/s':>10} {'us/msg':>8} {'+us/msg':>8}")
    scenarios: list[tuple[str, Callable[..., Awaitable[float]]]] = [
        ("request/reply, 1 requester", requests), ("publish -> 1 listener", publishes)]
    for name, scenario in scenarios:
        figures: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(runs):
            for mode in modes:
                figures[mode].append(await scenario(mode, count, exporter, provider))
        plain = statistics.median(figures["plain"])
        for mode in modes:
            value: Any = statistics.median(figures[mode])
            print(f"{name:<34} {mode:<16} {value:>10,.0f} {1e6 / value:>8.2f} {1e6 / value - 1e6 / plain:>8.2f}")
    provider.shutdown()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages and runs")
    add_uvloop_option(parser)
    args = parser.parse_args()
    raise SystemExit(run(main(args.quick), args.uvloop))
