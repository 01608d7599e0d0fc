"""A busy service for the monitor's tests: ``python tests/procs/monitored.py URL NAMESPACE ADDRESS``.

It answers requests at ADDRESS with its node id, and sends a request there
itself every ``PERIOD`` seconds (round-robin: to itself or to another node of
ADDRESS), so that a monitor sees handlers, a message rate and request latency.

It prints ``ready NODE_ID`` once its bus has started and runs until SIGTERM,
SIGINT, end of stdin, or ``LIFETIME`` seconds (see ``tests/procs/lifecycle.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from addrbus import BusError, EventBus
from tests.procs.lifecycle import emit, until_told_to_stop

HEARTBEAT = 0.2  # seconds: as tests/procs/service.py
LIFETIME = 60.0  # seconds: the longest this process lives
PERIOD = 0.05  # seconds between two of its own requests


async def run(url: str, namespace: str, address: str) -> None:
    bus = EventBus(url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)

    @bus.on(address)
    async def create(order: int) -> str:
        return bus.node_id

    async def load() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIFETIME
        order = 0
        while loop.time() < deadline:  # bounded, as the process is
            order += 1
            with contextlib.suppress(BusError):  # a peer that just left: the next one goes elsewhere
                await bus.request(address, order, timeout=2.0)
            await asyncio.sleep(PERIOD)  # pacing, not synchronisation

    async with bus:
        emit("ready", bus.node_id)
        traffic = asyncio.create_task(load())
        try:
            await until_told_to_stop(LIFETIME)
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic


if __name__ == "__main__":
    asyncio.run(run(*sys.argv[1:4]))
