"""A service whose bus metrics Prometheus can scrape at http://127.0.0.1:9464/metrics.

A quote service answers requests on ``prices.quote`` (and fails on an unknown
item); a client asks it for quotes, and sometimes an address nobody consumes.
``addrbus.prometheus.register`` exports the bus's counters, gauges and request
durations; ``prometheus_client.start_http_server`` serves them. It runs for
one second and prints a few lines of its own metrics; give it more time to
point a Prometheus at it: ``python examples/prometheus_metrics.py 600``
(``ADDRBUS_METRICS_PORT`` picks another port). Needs ``addrbus[prometheus]``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import urllib.request

from prometheus_client import start_http_server

from addrbus import EventBus, Message, NoHandlers, RecipientFailure
from addrbus.prometheus import register

HOST = "127.0.0.1"
PORT = int(os.environ.get("ADDRBUS_METRICS_PORT", "9464"))
PRICES = {"apple": 0.5, "bread": 2.25, "cheese": 7.0}
SHOWN = ("addrbus_requests_total", "addrbus_failures_total", "addrbus_handlers", "addrbus_up",
         "addrbus_request_duration_seconds_count")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode("utf-8"))


async def client(bus: EventBus, seconds: float) -> tuple[int, int]:
    """Ask for quotes for ``seconds``: return how many were answered and how many failed."""
    answered = failed = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        item = random.choice([*PRICES, "caviar"])  # caviar: the service fails
        address = "prices.quote" if random.random() < 0.9 else "prices.history"  # nobody consumes that
        try:
            await bus.request(address, item, timeout=1.0)
            answered += 1
        except (RecipientFailure, NoHandlers):
            failed += 1
        await asyncio.sleep(0.01)
    return answered, failed


async def main(seconds: float) -> None:
    bus = EventBus("memory://", namespace="shop")

    @bus.consumer("prices.quote")
    async def quote(msg: Message[str]) -> None:
        if msg.body not in PRICES:
            await msg.fail(404, f"no price for {msg.body}")  # the requester gets RecipientFailure
            return
        await msg.reply(PRICES[msg.body])

    metrics = register(bus)  # into prometheus_client.REGISTRY, beside the process and GC metrics
    server, thread = start_http_server(PORT, addr=HOST)
    print(f"metrics on http://{HOST}:{server.server_port}/metrics for {seconds:g} s")
    try:
        async with bus:
            answered, failed = await client(bus, seconds)
            print(f"{answered} quotes answered, {failed} requests failed")
            text = await asyncio.to_thread(scrape, f"http://{HOST}:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        metrics.unregister()
    for line in text.splitlines():
        if line.startswith(SHOWN):
            print(" ", line)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0))
