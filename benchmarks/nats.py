"""nats:// between two processes, each figure beside raw nats-py from the same run.

Run::

    scripts/in-netns .venv/bin/python benchmarks/nats.py [--quick]

It starts its own nats-server on a free loopback port (never a shared one), and
a child process (the service, the subscriber). Both run one bus on that server
and, beside it, raw nats-py doing the same exchange with payloads as large as
the bus's frames:

* ping-pong: one request at a time; raw: ``nc.request`` to a subscription that
  answers with ``msg.respond``.
* 50 concurrent: 50 requesters in a loop; raw: 50 ``nc.request`` in a loop.
* one-way: publish N messages from 100 concurrent senders; raw: ``nc.publish``
  N times, then one ``flush``. Throughput runs from the first send to the last
  receipt, measured at the subscriber.

Each phase also reports the CPU time each process spent per message. The exit
status is the number of targets missed.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory leads sys.path, and this file would
# shadow the nats package it measures.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))  # last: the nats package first, then _harness.py beside us

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import nats  # noqa: E402
from _harness import (  # noqa: E402 - benchmarks/_harness.py
    Child,
    Phases,
    PrivateServer,
    add_uvloop_option,
    concurrently,
    run,
    serve_commands,
    timed,
)

from addrbus import EventBus  # noqa: E402

ECHO, SINK = "bench.echo", "bench.sink"
BODY = "x" * 200
SENDERS = 100
TARGETS = {"ping-pong": 0.8, "50 concurrent": 1.0, "one-way": 0.6}  # bus / raw, at least


class Server(PrivateServer):
    """A private nats-server."""

    program = "nats-server"

    def command(self) -> list[str]:
        return [self.path, "-a", "127.0.0.1", "-p", str(self.port)]

    def probe(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            info = sock.recv(4096)
        if not info.startswith(b"INFO"):
            raise OSError("no INFO yet")
        self.version = json.loads(info[5:].split(b"\r\n")[0])["version"]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


async def child(url: str, ns: str) -> None:
    counts = {"bus": 0, "raw": 0}
    last = {"bus": 0.0, "raw": 0.0}
    bus = EventBus(url, namespace=ns)

    @bus.on(ECHO)
    async def echo(n: int) -> int:
        return n

    @bus.on(SINK, max_queue=10_000_000)
    async def sink(body: str) -> None:
        counts["bus"] += 1
        last["bus"] = time.monotonic()

    nc = await nats.connect(url)

    async def answer(msg: Any) -> None:
        await msg.respond(msg.data)

    async def raw_sink(msg: Any) -> None:
        counts["raw"] += 1
        last["raw"] = time.monotonic()

    await nc.subscribe("raw.req", cb=answer)
    await nc.subscribe("raw.sink", cb=raw_sink, pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
    await nc.flush()
    async with bus:
        await serve_commands(counts, last)
    await nc.close()


async def parent(url: str, version: str, quick: bool) -> int:
    n_ping, n_conc, n_oneway = (2_000, 10_000, 20_000) if quick else (10_000, 50_000, 200_000)
    ns = "bench"
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", url, ns, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    kid = Child(process, read_timeout=120)
    phases = Phases(kid)
    phase = phases.run

    try:
        await kid.read()
        nc = await nats.connect(url)
        payload = bytes(300)  # about a bus request frame
        sink_payload = bytes(330)  # about a bus publish frame of BODY
        async with EventBus(url, namespace=ns) as bus:
            await bus.wait_for_handlers(SINK, 1, timeout=10)
            await bus.wait_for_handlers(ECHO, 1, timeout=10)

            async def raw_request() -> None:
                await nc.request("raw.req", payload, timeout=5)

            await timed(500, raw_request)  # warm both paths
            await timed(500, lambda: bus.request(ECHO, 1, timeout=5))

            async def publish_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                await concurrently(n_oneway, lambda: bus.publish(SINK, BODY), SENDERS)
                return t0, await kid.command("expect", "bus", n_oneway)

            async def blast_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                for _ in range(n_oneway):
                    await nc.publish("raw.sink", sink_payload)
                await nc.flush()
                return t0, await kid.command("expect", "raw", n_oneway)

            raw_lat = await phase("ping-pong raw", n_ping, lambda: timed(n_ping, raw_request))
            bus_lat = await phase("ping-pong bus", n_ping,
                                  lambda: timed(n_ping, lambda: bus.request(ECHO, 1, timeout=5)))
            raw_conc = await phase("50 concurrent raw", n_conc, lambda: concurrently(n_conc, raw_request))
            bus_conc = await phase("50 concurrent bus", n_conc,
                                   lambda: concurrently(n_conc, lambda: bus.request(ECHO, 1, timeout=30)))
            start, raw_got = await phase("one-way raw", n_oneway, blast_all)
            start_bus, bus_got = await phase("one-way bus", n_oneway, publish_all)
        await nc.close()
        await kid.tell("quit")
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    def rate(got: dict[str, Any], t0: float) -> float:
        return float(got["count"]) / max(got["last"] - t0, 1e-9)

    raw_rate, bus_rate = rate(raw_got, start), rate(bus_got, start_bus)
    p50 = (statistics.median(raw_lat) * 1e6, statistics.median(bus_lat) * 1e6)
    per_s = (n_ping / sum(raw_lat), n_ping / sum(bus_lat))
    rows = [
        ("ping-pong round trips/s", *per_s, "ping-pong"),
        ("ping-pong p50 latency (us)", *p50, None),
        ("50 concurrent, round trips/s", raw_conc, bus_conc, "50 concurrent"),
        ("one-way publish, msgs/s", raw_rate, bus_rate, "one-way"),
        ("one-way received", raw_got["count"], bus_got["count"], None),
    ]
    print(f"nats:// between two processes ({'quick' if quick else 'full'}), nats-server {version} on loopback,"
          f" nats-py {importlib.metadata.version('nats-py')}, {os.cpu_count()} CPUs")
    print(f"{n_ping:,} ping-pongs, {n_conc:,} concurrent requests, {n_oneway:,} one-way messages")
    print(f"{'figure':<32} {'raw':>10} {'addrbus':>10} {'ratio':>7} {'target':>9}")
    missed = 0
    for name, raw_v, bus_v, kind in rows:
        goal, verdict = "", ""
        if kind is not None:
            met = bus_v >= TARGETS[kind] * raw_v
            goal, verdict = f">= {TARGETS[kind]:.2f}x", "ok" if met else "SHORT"
            missed += not met
        elif name == "one-way received":
            met = bus_v == n_oneway
            goal, verdict = f"= {n_oneway:,}", "ok" if met else "SHORT"
            missed += not met
        print(f"{name:<32} {raw_v:>10,.1f} {bus_v:>10,.1f} {bus_v / raw_v:>6.2f}x {goal:>9} {verdict}")
    phases.print_cpu()
    return missed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    add_uvloop_option(parser)
    parser.add_argument("--child", nargs=2, metavar=("URL", "NS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(child(*args.child))
        sys.exit(0)
    server = Server()
    try:
        sys.exit(run(parent(server.url, server.version, args.quick), args.uvloop))
    finally:
        server.stop()
