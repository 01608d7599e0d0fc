"""mqtt:// between two processes, each figure beside raw aiomqtt from the same run.

Run::

    scripts/in-netns .venv/bin/python benchmarks/mqtt.py [--quick] [--profile child|parent]
                                                       [--profiler cprofile|pyinstrument]

It starts its own mosquitto on a free loopback port (never the shared 1883)
and a child process (the service, the subscriber). Both processes run one bus
on that broker and, beside it, a raw aiomqtt client (MQTT 5, QoS 0) doing the
same exchange with payloads as large as the bus's frames:

* ping-pong: one request at a time; raw: ``publish`` to a request topic, the
  child's ``async for message in client.messages`` loop publishes it back, and
  this side takes the echo from its own ``client.messages``.
* 50 concurrent: 50 requesters in a loop; raw: 50 publishes outstanding, the
  echoes matched to futures by a listener task.
* one-way: N messages from 100 concurrent ``publish`` callers on both sides.
  Throughput runs from the first send to the last receipt (both clocks are
  the host's monotonic clock).

mosquitto drops QoS 0 messages for a subscriber with more than
``max_queued_messages`` (1000 by default) waiting; the benchmark's broker
allows 1,000,000, so that neither side loses messages to a burst. The exit
status is the number of targets missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt
from _harness import (  # benchmarks/_harness.py
    Child,
    Phases,
    PrivateServer,
    Profiler,
    add_uvloop_option,
    concurrently,
    run,
    serve_commands,
    timed,
)

from addrbus import EventBus
from addrbus._wire.bodies import encode_body
from addrbus._wire.envelope import Envelope
from addrbus._wire.frames import encode_frame

ECHO, SINK = "bench.echo", "bench.sink"
BODY = "x" * 200  # the one-way payload
NODE = "0123456789abcdef"
SENDERS = 100  # one-way: concurrent publishers, both sides
RAW_REQ, RAW_REP, RAW_CREQ, RAW_CREP, RAW_SINK = "raw/req", "raw/rep", "raw/creq", "raw/crep", "raw/sink"
TARGETS = {"ping-pong": 0.6, "50 concurrent": 0.6, "one-way": 0.6}  # bus / raw, at least


def frame_size(kind: str, body: Any, ns: str) -> int:
    """Return the bytes the bus publishes for one message (ids as long as real ones)."""
    msg_id = f"{NODE}-{123456:x}"
    env = Envelope(kind=kind, ns=ns, addr=ECHO if kind == "req" else SINK, id=msg_id, src=NODE,  # type: ignore[arg-type]
                   ts=time.time(), **({"cid": msg_id, "rto": NODE, "dst": NODE, "dl": time.time()}
                                     if kind == "req" else {}))
    return len(encode_frame(env, encode_body(body)))


class Mosquitto(PrivateServer):
    """A private mosquitto, with room for a burst to a slow subscriber (its default queues 1,000)."""

    program = "mosquitto"

    def command(self) -> list[str]:
        conf = Path(self.tmp) / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            "max_queued_messages 1000000", "log_dest none", *(["user root"] if os.geteuid() == 0 else []),
        ]) + "\n")
        self.version = subprocess.run([self.path, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
        return [self.path, "-c", str(conf)]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def raw_client(port: int) -> aiomqtt.Client:
    """Return aiomqtt's client as a user would make it, on MQTT 5."""
    return aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, max_queued_incoming_messages=0)


# -- the child: service and subscriber -----------------------------------------------------------


async def child(url: str, port: int, ns: str, profiler_kind: str) -> None:
    counts = {"bus": 0, "raw": 0}
    last = {"bus": 0.0, "raw": 0.0}
    profiler = Profiler(profiler_kind)
    bus = EventBus(url, namespace=ns)

    @bus.on(ECHO)
    async def echo(n: int) -> int:
        return n

    @bus.on(SINK, max_queue=10_000_000)
    async def sink(body: str) -> None:
        counts["bus"] += 1
        last["bus"] = time.monotonic()

    client = raw_client(port)
    await client.__aenter__()
    client.pending_calls_threshold = 1_000_000
    await client.subscribe([(RAW_REQ, 0), (RAW_CREQ, 0), (RAW_SINK, 0)])
    answering: set[asyncio.Task[Any]] = set()

    async def raw_listener() -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic == RAW_REQ:
                await client.publish(RAW_REP, message.payload)
            elif topic == RAW_CREQ:
                task = asyncio.ensure_future(client.publish(RAW_CREP, message.payload))
                answering.add(task)
                task.add_done_callback(answering.discard)
            else:
                counts["raw"] += 1
                last["raw"] = time.monotonic()

    loop = asyncio.get_running_loop()
    listener = loop.create_task(raw_listener())
    async with bus:
        await serve_commands(counts, last, profiler)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await client.__aexit__(None, None, None)
    profiler.report("child (service and subscriber)")


# -- the parent: requester and publisher ---------------------------------------------------------


class RawPeer:
    """Raw aiomqtt on the requester's side: one client, and a listener for the echoes."""

    def __init__(self, port: int, req_size: int) -> None:
        self.client = raw_client(port)
        self.pad = bytes(max(req_size - 4, 0))
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.echoes: asyncio.Queue[bytes] = asyncio.Queue()
        self.seq = 0

    async def start(self) -> None:
        await self.client.__aenter__()
        self.client.pending_calls_threshold = 1_000_000  # no warning per publish past 10 in flight
        await self.client.subscribe([(RAW_REP, 0), (RAW_CREP, 0)])
        self.listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            if message.topic.value == RAW_REP:
                self.echoes.put_nowait(payload)
                continue
            future = self.waiting.pop(int.from_bytes(payload[:4], "big"), None)
            if future is not None and not future.done():
                future.set_result(None)

    async def ping_pong(self) -> None:
        """Publish, then wait for the echo."""
        self.seq += 1
        await self.client.publish(RAW_REQ, self.seq.to_bytes(4, "big") + self.pad)
        await self.echoes.get()

    async def round_trip(self) -> None:
        """Publish, then wait for the listener to hand over the echo."""
        self.seq += 1
        future = self.waiting[self.seq] = asyncio.get_running_loop().create_future()
        await self.client.publish(RAW_CREQ, self.seq.to_bytes(4, "big") + self.pad)
        await future

    async def close(self) -> None:
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await self.client.__aexit__(None, None, None)


async def parent(server: Mosquitto, quick: bool, profile: str | None, profiler_kind: str) -> int:
    n_ping, n_conc, n_oneway = (2_000, 5_000, 20_000) if quick else (10_000, 25_000, 100_000)
    ns = "bench"
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--profiler", profiler_kind, "--child", server.url, str(server.port), ns,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    kid = Child(process, read_timeout=180)
    profiler = Profiler(profiler_kind)

    phases = Phases(kid, profile, profiler)
    phase = phases.run

    size = frame_size("pub", BODY, ns)
    try:
        await kid.read()
        raw = RawPeer(server.port, frame_size("req", 1, ns))
        await raw.start()
        async with EventBus(server.url, namespace=ns) as bus:
            await bus.wait_for_handlers(SINK, 1, timeout=10)
            await bus.wait_for_handlers(ECHO, 1, timeout=10)
            await timed(500, raw.ping_pong)  # warm both paths
            await timed(500, lambda: bus.request(ECHO, 1, timeout=5))
            payload = bytes(size)

            async def publish_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                await concurrently(n_oneway, lambda: bus.publish(SINK, BODY), SENDERS)
                return t0, await kid.command("expect", "bus", n_oneway)

            async def blast_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                await concurrently(n_oneway, lambda: raw.client.publish(RAW_SINK, payload), SENDERS)
                return t0, await kid.command("expect", "raw", n_oneway)

            raw_lat = await phase("ping-pong raw", n_ping, lambda: timed(n_ping, raw.ping_pong), False)
            bus_lat = await phase("ping-pong bus", n_ping,
                                  lambda: timed(n_ping, lambda: bus.request(ECHO, 1, timeout=5)), True)
            raw_conc = await phase("50 concurrent raw", n_conc, lambda: concurrently(n_conc, raw.round_trip), False)
            bus_conc = await phase("50 concurrent bus", n_conc,
                                   lambda: concurrently(n_conc, lambda: bus.request(ECHO, 1, timeout=30)), True)
            await kid.command("reset")
            start, raw_got = await phase("one-way raw", n_oneway, blast_all, False)
            start_bus, bus_got = await phase("one-way bus", n_oneway, publish_all, True)
        await raw.close()
        await kid.tell("quit")
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    profiler.report("parent (requester and publisher)")

    def rate(got: dict[str, Any], t0: float) -> float:
        return float(got["count"]) / max(got["last"] - t0, 1e-9)

    raw_rate, bus_rate = rate(raw_got, start), rate(bus_got, start_bus)
    p50 = (statistics.median(raw_lat) * 1e6, statistics.median(bus_lat) * 1e6)
    p99 = (statistics.quantiles(raw_lat, n=100)[98] * 1e6, statistics.quantiles(bus_lat, n=100)[98] * 1e6)
    per_s = (n_ping / sum(raw_lat), n_ping / sum(bus_lat))

    def target(kind: str, raw_v: float, bus_v: float) -> tuple[str, bool]:
        return f">= {TARGETS[kind]:.2f}x", bus_v >= TARGETS[kind] * raw_v

    rows: list[tuple[str, float, float, float | None, str, bool | None]] = [
        ("ping-pong round trips/s", *per_s, per_s[1] / per_s[0], *target("ping-pong", *per_s)),
        ("ping-pong p50 latency (us)", *p50, p50[1] / p50[0], "", None),
        ("ping-pong p99 latency (us)", *p99, p99[1] / p99[0], "", None),
        ("50 concurrent, round trips/s", raw_conc, bus_conc, bus_conc / raw_conc,
         *target("50 concurrent", raw_conc, bus_conc)),
        ("one-way publish, msgs/s", raw_rate, bus_rate, bus_rate / raw_rate, *target("one-way", raw_rate, bus_rate)),
        ("one-way received", raw_got["count"], bus_got["count"], None, f"= {n_oneway:,}",
         bus_got["count"] == n_oneway),
    ]
    print(f"mqtt:// between two processes ({'quick' if quick else 'full'}), {server.version} on loopback,"
          f" aiomqtt {aiomqtt.__version__} on paho-mqtt {paho.mqtt.__version__}, QoS 0, {os.cpu_count()} CPUs")
    print(f"{n_ping:,} ping-pongs, {n_conc:,} concurrent requests, {n_oneway:,} one-way messages of {size} bytes")
    print(f"{'figure':<32} {'raw':>10} {'addrbus':>10} {'ratio':>7} {'target':>9}")
    missed = 0
    for name, raw_v, bus_v, ratio, goal, met in rows:
        verdict = "" if met is None else ("ok" if met else "SHORT")
        missed += met is False
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        print(f"{name:<32} {raw_v:>10,.1f} {bus_v:>10,.1f} {ratio_text:>7} {goal:>9} {verdict}")
    phases.print_cpu()
    print("command: scripts/in-netns .venv/bin/python benchmarks/mqtt.py" + (" --quick" if quick else ""))
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    add_uvloop_option(parser)
    parser.add_argument("--profile", choices=["child", "parent"], help="profile one side's bus phases")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--child", nargs=3, metavar=("URL", "PORT", "NS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, port, ns = args.child
        run(child(url, int(port), ns, args.profiler))
        return
    server = Mosquitto()
    try:
        missed = run(parent(server, args.quick, args.profile, args.profiler), args.uvloop)
    finally:
        server.stop()
    raise SystemExit(missed)


if __name__ == "__main__":
    main()
