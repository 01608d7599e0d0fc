"""Wildcards and groups across two processes: a dashboard hears every sensor through two patterns.

Run it with ``python examples/sensors.py``. It starts a second process, the
sensors, and both talk over ``udp://`` multicast on this machine only
(interface 127.0.0.1, TTL 0), so no server is needed. The dashboard consumes
``sensors.*.temperature`` (one room token) and ``sensors.>`` (everything under
``sensors``); each message says its concrete address in ``msg.address``. Two
archivers share the group "archive": each reading is archived once, by one of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from addrbus import EventBus, Message

NAMESPACE = "sensors-demo"
READINGS = {"kitchen": 21.5, "hall": 19.0, "attic": 25.5}
LIMIT = 20.0  # seconds: the whole demo takes well under one


def default_url() -> str:
    port = 20000 + os.getpid() % 20000  # one group per run, so that two runs never mix
    return f"udp://239.255.42.42:{port}?interface=127.0.0.1&ttl=0"


async def sensors(url: str) -> None:
    """The second process: publish each room's readings once the dashboard listens, then wait to be told."""
    bus = EventBus(url, namespace=NAMESPACE)
    async with bus:
        # The dashboard's two patterns and its two archivers match this address.
        await bus.wait_for_handlers("sensors.kitchen.temperature", 4, timeout=LIMIT)
        told = asyncio.ensure_future(bus.wait_for("demo.done", timeout=LIMIT))
        await bus.wait_for_handlers("demo.done", 1, timeout=LIMIT)  # our own wait_for is registered
        for room, celsius in READINGS.items():
            await bus.publish(f"sensors.{room}.temperature", celsius)
            await bus.publish(f"sensors.{room}.humidity", 40 + len(room))
        await told


async def dashboard() -> None:
    url = os.environ.get("ADDRBUS_SENSORS_URL") or default_url()
    bus = EventBus(url, namespace=NAMESPACE)
    temperatures: dict[str, float] = {}
    seen: list[str] = []
    archived: dict[str, int] = {"archiver 1": 0, "archiver 2": 0}
    complete = asyncio.Event()

    def archiver(name: str) -> Any:
        async def archive(reading: float) -> None:
            archived[name] += 1
            if len(seen) == 2 * len(READINGS) and sum(archived.values()) == 2 * len(READINGS):
                complete.set()
        return archive

    bus.on("sensors.>", archiver("archiver 1"), group="archive")
    bus.on("sensors.>", archiver("archiver 2"), group="archive")

    @bus.consumer("sensors.*.temperature")
    async def temperature(msg: Message[float]) -> None:
        temperatures[msg.address.split(".")[1]] = msg.body

    @bus.consumer("sensors.>")
    async def everything(msg: Message[Any]) -> None:
        seen.append(msg.address)
        if len(seen) == 2 * len(READINGS) and sum(archived.values()) == 2 * len(READINGS):
            complete.set()

    async with bus:
        child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--sensors", url)
        try:
            await asyncio.wait_for(complete.wait(), LIMIT)
            await bus.wait_for_handlers("demo.done", 1, timeout=LIMIT)
            await bus.publish("demo.done")
            await asyncio.wait_for(child.wait(), LIMIT)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    for room in sorted(temperatures):
        print(f"{room:<8} {temperatures[room]:5.1f} C")
    print(f"'sensors.>' heard {len(seen)} messages, e.g. {sorted(seen)[:2]}")
    print(f"the group 'archive' archived each once: {archived}")
    if child.returncode != 0:
        raise SystemExit(f"the sensors process exited with {child.returncode}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sensors":
        asyncio.run(sensors(sys.argv[2]))
    else:
        asyncio.run(dashboard())
