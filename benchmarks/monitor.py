"""What ``addrbus monitor`` costs the bus: its own traffic per node, beside the bus's idle traffic, same run.

Run: ``.venv/bin/python benchmarks/monitor.py [--nodes 10] [--seconds 10]``

Starts a private redis-server, ``--nodes`` buses (one handler each) and measures the
bytes through Redis (``INFO stats``: net input + output) for ``--seconds`` with the
nodes idle (heartbeats only), then for as long again with a monitor asking every
node for its state each second. The monitor's traffic per node is the difference,
divided by the nodes and the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

# This directory leads sys.path when run as a script; benchmarks/redis.py would shadow the redis package.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

from _harness import RedisServer, add_uvloop_option, loop_name, run  # noqa: E402

from addrbus import EventBus  # noqa: E402
from addrbus._reporting import STATE_ADDRESS  # noqa: E402
from addrbus.monitor import Monitor  # noqa: E402


def net_bytes(server: RedisServer) -> int:
    stats = server.info("stats")
    return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])


async def measure(server: RedisServer, seconds: float, monitor: Monitor | None) -> float:
    """Return the bytes/s through Redis over ``seconds``, polling with ``monitor`` each second if given."""
    before = net_bytes(server)
    began = time.monotonic()
    end = began + seconds
    while (left := end - time.monotonic()) > 0:
        if monitor is not None:
            await monitor.poll()
        await asyncio.sleep(min(1.0, max(0.0, left)) if monitor is None else max(0.0, min(left, 1.0 - (
            (time.monotonic() - began) % 1.0))))
    return (net_bytes(server) - before) / (time.monotonic() - began)


async def main(nodes: int, seconds: float) -> int:
    server = RedisServer()
    try:
        ns = f"bench-monitor-{time.time_ns()}"
        buses = [EventBus(server.url, namespace=ns) for _ in range(nodes)]
        for i, bus in enumerate(buses):
            bus.on(f"service.{i}", lambda body: body)
        watcher = EventBus(server.url, namespace=ns)
        for bus in [*buses, watcher]:
            await bus.start()
        try:
            await watcher.wait_for_handlers(f"service.{nodes - 1}", timeout=10)
            monitor = Monitor(watcher, interval=1.0)
            await monitor.poll()  # every node counts from here (its interceptor is installed)
            answer = await watcher.request(STATE_ADDRESS, None, node=buses[0].node_id, timeout=5)
            state_size = len(json.dumps(answer))
            idle = await measure(server, seconds, None)
            watched = await measure(server, seconds, monitor)
        finally:
            for bus in [*buses, watcher]:
                await bus.stop()
    finally:
        server.stop()
    per_node = (watched - idle) / nodes
    print(f"Python {sys.version.split()[0]}, {loop_name()} loop, redis {server.version}, {nodes} nodes + the monitor,"
          f" {seconds:g} s each")
    print(f"{'figure':<52} {'bytes/s':>12}")
    print(f"{'bus idle (heartbeats), all nodes':<52} {idle:>12,.0f}")
    print(f"{'bus with a monitor asking each second, all nodes':<52} {watched:>12,.0f}")
    print(f"{'the monitor, per node':<52} {per_node:>12,.0f}")
    print(f"{'one node state answer (JSON body, bytes)':<52} {state_size:>12,}")
    print(f"{'polls made':<52} {monitor.polls:>12}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    add_uvloop_option(parser)
    args = parser.parse_args()
    raise SystemExit(run(main(args.nodes, args.seconds), args.uvloop))
