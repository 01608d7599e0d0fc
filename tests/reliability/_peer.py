"""A bus node in its own process: ``python _peer.py ROLE URL NAMESPACE ADDRESS [KEY=VALUE ...]``.

Roles:

* ``echo``: answer every request at ADDRESS with its body.
* ``consume``: take ``int`` sends at ADDRESS and remember them; answer a
  request at ``ADDRESS.report.INDEX`` with them and the bus's counters.
* ``publish``: wait for a consumer of ADDRESS, publish ``rate`` messages a
  second of ``size`` bytes for ``seconds`` s, print ``done SENT ERRORS SECONDS``
  and exit.

``ADDRBUS_SHARED_KEY`` in the environment turns encryption on. Every role
prints ``ready NODE_ID`` once started, and lives until SIGTERM, the end of
stdin, or ``lifetime`` seconds, so a crashed test never leaves one behind.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from addrbus import EventBus
from tests.procs.lifecycle import emit, until_told_to_stop


async def echo(bus: EventBus, address: str, opts: dict[str, str]) -> None:
    @bus.on(address, max_queue=int(opts.get("max_queue", "20000")))
    async def answer(body: Any) -> Any:
        return body

    async with bus:
        emit("ready", bus.node_id)
        await until_told_to_stop(float(opts.get("lifetime", "120")))


async def consume(bus: EventBus, address: str, opts: dict[str, str]) -> None:
    handled: list[int] = []

    @bus.on(address, max_queue=100_000)
    async def take(n: int) -> None:
        handled.append(n)

    @bus.on(f"{address}.report.{opts['index']}")
    async def report() -> dict[str, Any]:
        return {"ids": handled, "stats": bus.stats()}

    async with bus:
        emit("ready", bus.node_id)
        await until_told_to_stop(float(opts.get("lifetime", "120")))


async def publish(bus: EventBus, address: str, opts: dict[str, str]) -> None:
    rate, seconds, size = float(opts["rate"]), float(opts["seconds"]), int(opts["size"])
    count = int(rate * seconds)
    async with bus:
        emit("ready", bus.node_id)
        await bus.wait_for_handlers(address, 1, timeout=20.0)
        loop = asyncio.get_running_loop()
        pad = "x" * max(0, size - 40)  # 40: what {"seq": N, "pad": ""} takes around the padding
        errors = 0
        emit("start")
        t0 = loop.time()
        for seq in range(count):
            # An absolute schedule: a late tick is made up, the rate holds on average.
            due = t0 + seq / rate
            ahead = due - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
            try:
                await bus.publish(address, {"seq": seq, "pad": pad})
            except Exception as exc:
                errors += 1
                if errors <= 3:
                    emit("error", type(exc).__name__, exc)
        emit("done", count, errors, round(loop.time() - t0, 3))


ROLES = {"echo": echo, "consume": consume, "publish": publish}


def main(argv: list[str]) -> None:
    """Run one role: ``ROLE URL NAMESPACE ADDRESS [KEY=VALUE ...]``."""
    role, url, namespace, address, *rest = argv
    opts = dict(arg.split("=", 1) for arg in rest)
    bus = EventBus(url, namespace=namespace, shared_key=os.environ.get("ADDRBUS_SHARED_KEY") or None,
                   stop_timeout=1.0)
    asyncio.run(ROLES[role](bus, address, opts))


if __name__ == "__main__":
    main(sys.argv[1:])
