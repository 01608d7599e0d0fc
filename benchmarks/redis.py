"""redis:// between two processes, each figure beside raw redis-py from the same run.

Run::

    scripts/in-netns .venv/bin/python benchmarks/redis.py [--quick] [--profile child|parent]
                                                        [--profiler cprofile|pyinstrument]

It starts its own redis-server on a free loopback port (never a shared one),
and a child process (the service, the subscriber). Both processes run one bus
on that server and, beside it, raw redis-py (asyncio, hiredis parser, RESP2)
doing the same exchange with payloads as large as the bus's frames:

* ping-pong: one request at a time; raw: ``PUBLISH`` there, the child's
  pub/sub listener ``PUBLISH``-es it back, ``PubSub.get_message`` waits for it.
* 50 concurrent: 50 requesters in a loop; raw: 50 publishes outstanding, the
  replies matched to futures by a listener task, the child answering each
  message from its own task (redis-py's connection pool).
* one-way: publish N messages from 100 concurrent senders, then from one sender
  awaiting each publish in turn (a service's loop); raw: the fastest
  plain program for the job, ``PUBLISH`` of the same 200-byte body through a
  non-transactional pipeline, 1,000 commands a batch, to a subscriber that
  counts. Throughput runs from the first send to the last receipt (both clocks
  are the host's monotonic clock).

``--profile child`` profiles the child during the bus phases (cProfile, or
pyinstrument with ``--profiler pyinstrument``) and prints where its time goes;
``--profile parent`` does the same for this process. Each phase also reports
the CPU time each process spent per message. The exit status is the number of
targets missed.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory leads sys.path, and this file would
# shadow the redis package it measures.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))  # last: the redis package first, then _harness.py beside us

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from _harness import (  # noqa: E402 - benchmarks/_harness.py
    Child,
    Phases,
    Profiler,
    RedisServer,
    add_uvloop_option,
    concurrently,
    run,
    serve_commands,
    timed,
)

from addrbus import EventBus  # noqa: E402
from addrbus._wire.bodies import encode_body  # noqa: E402
from addrbus._wire.envelope import Envelope  # noqa: E402
from addrbus._wire.frames import encode_frame  # noqa: E402
from addrbus.transports.redis import wire  # noqa: E402

ECHO, SINK = "bench.echo", "bench.sink"
BODY = "x" * 200  # the one-way payload
NODE = "0123456789abcdef"
PIPELINE = 1_000  # raw one-way: PUBLISH commands per pipeline
SENDERS = 100  # bus one-way: concurrent publishers
RAW_REQ, RAW_REP, RAW_CREQ, RAW_CREP, RAW_SINK = b"raw:req", b"raw:rep", b"raw:creq", b"raw:crep", b"raw:sink"
TARGETS = {"ping-pong": 0.85, "50 concurrent": 1.0, "one-way": 0.6}  # bus / raw, at least


def frame_size(kind: str, body: Any, ns: str) -> int:
    """Return the bytes the bus publishes for one message (ids as long as real ones)."""
    msg_id = f"{NODE}-{123456:x}"
    env = Envelope(kind=kind, ns=ns, addr=ECHO if kind == "req" else SINK, id=msg_id, src=NODE,  # type: ignore[arg-type]
                   ts=time.time(), **({"cid": msg_id, "rto": NODE, "dst": NODE, "dl": time.time()}
                                     if kind == "req" else {}))
    return len(encode_frame(env, encode_body(body))) + (0 if kind == "req" else wire.SENDER_LEN)


def raw_client(url: str) -> aioredis.Redis:
    """Return redis-py's asyncio client as a user would make it (hiredis is picked when installed)."""
    return aioredis.Redis.from_url(url, protocol=2)


# -- the child: service and subscriber -----------------------------------------------------------


async def child(url: str, ns: str, profiler_kind: str) -> None:
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

    client = raw_client(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(RAW_REQ, RAW_CREQ, RAW_SINK)
    answering: set[asyncio.Task[Any]] = set()

    async def raw_listener() -> None:
        async for msg in pubsub.listen():
            if msg["type"] != "message":
                continue
            channel = msg["channel"]
            if channel == RAW_REQ:
                await client.publish(RAW_REP, msg["data"])
            elif channel == RAW_CREQ:
                task = asyncio.ensure_future(client.publish(RAW_CREP, msg["data"]))
                answering.add(task)
                task.add_done_callback(answering.discard)
            else:
                counts["raw"] += 1
                last["raw"] = time.monotonic()

    loop = asyncio.get_running_loop()
    listener = loop.create_task(raw_listener())
    async with bus:
        await serve_commands(counts, last, profiler, lambda which: (
            {k: v for k, v in bus.stats().items() if "drop" in k and v} if which == "bus" else {}))
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await pubsub.aclose()
    await client.aclose()
    profiler.report("child (service and subscriber)")


# -- the parent: requester and publisher ---------------------------------------------------------


class RawPeer:
    """Raw redis-py on the requester's side: a client, and a listener for the replies."""

    def __init__(self, url: str, req_size: int) -> None:
        self.client = raw_client(url)
        self.pad = bytes(max(req_size - 4, 0))
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.seq = 0

    async def start(self) -> None:
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(RAW_REP)
        self.concurrent = self.client.pubsub(ignore_subscribe_messages=True)
        await self.concurrent.subscribe(RAW_CREP)
        self.listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        async for msg in self.concurrent.listen():
            if msg["type"] == "message":
                future = self.waiting.pop(int.from_bytes(msg["data"][:4], "big"), None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def ping_pong(self) -> None:
        """PUBLISH, then wait for the echo on this side's subscription."""
        self.seq += 1
        await self.client.publish(RAW_REQ, self.seq.to_bytes(4, "big") + self.pad)
        for _ in range(1000):  # skips nothing in practice: only messages come on this subscription
            if await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=None) is not None:
                return

    async def round_trip(self) -> None:
        """PUBLISH, then wait for the listener to hand over the echo."""
        self.seq += 1
        future = self.waiting[self.seq] = asyncio.get_running_loop().create_future()
        await self.client.publish(RAW_CREQ, self.seq.to_bytes(4, "big") + self.pad)
        await future

    async def blast(self, count: int, size: int) -> float:
        """Publish ``count`` messages through pipelines of PIPELINE commands; return the start time."""
        payload = bytes(size)
        start = time.monotonic()
        for first in range(0, count, PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(PIPELINE, count - first)):
                pipe.publish(RAW_SINK, payload)
            await pipe.execute()
        return start

    async def close(self) -> None:
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await self.pubsub.aclose()
        await self.concurrent.aclose()
        await self.client.aclose()


async def parent(url: str, version: str, quick: bool, profile: str | None, profiler_kind: str) -> int:
    n_ping, n_conc, n_oneway = (2_000, 10_000, 20_000) if quick else (10_000, 50_000, 200_000)
    ns = "bench"
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--profiler", profiler_kind, "--child", url, ns,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    kid = Child(process, read_timeout=120)
    profiler = Profiler(profiler_kind)

    phases = Phases(kid, profile, profiler)
    phase = phases.run

    size = frame_size("pub", BODY, ns)
    try:
        await kid.read()
        raw = RawPeer(url, frame_size("req", 1, ns))
        await raw.start()
        async with EventBus(url, namespace=ns) as bus:
            await bus.wait_for_handlers(SINK, 1, timeout=10)
            await bus.wait_for_handlers(ECHO, 1, timeout=10)
            await timed(500, raw.ping_pong)  # warm both paths
            await timed(500, lambda: bus.request(ECHO, 1, timeout=5))

            async def publish_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                await concurrently(n_oneway, lambda: bus.publish(SINK, BODY), SENDERS)
                return t0, await kid.command("expect", "bus", n_oneway)

            async def publish_in_turn() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                for _ in range(n_oneway):  # what most services write: one publisher, one await at a time
                    await bus.publish(SINK, BODY)
                return t0, await kid.command("expect", "bus", n_oneway)

            async def blast_all() -> tuple[float, dict[str, Any]]:
                t0 = await raw.blast(n_oneway, len(BODY))  # the body alone: no envelope to carry
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
            await kid.command("reset")
            start_seq, seq_got = await phase("one-way bus, in turn", n_oneway, publish_in_turn, True)
            sender_stats = bus.stats()
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

    raw_rate, bus_rate, seq_rate = rate(raw_got, start), rate(bus_got, start_bus), rate(seq_got, start_seq)
    p50 = (statistics.median(raw_lat) * 1e6, statistics.median(bus_lat) * 1e6)
    p99 = (statistics.quantiles(raw_lat, n=100)[98] * 1e6, statistics.quantiles(bus_lat, n=100)[98] * 1e6)
    per_s = (n_ping / sum(raw_lat), n_ping / sum(bus_lat))

    def target(kind: str, raw_v: float, bus_v: float) -> tuple[str, bool]:
        return f">= {TARGETS[kind]:.2f}x", bus_v >= TARGETS[kind] * raw_v

    rows: list[tuple[str, float, float, float | None, str, bool | None]] = [
        # figure, raw, bus, ratio bus/raw, target text, met
        ("ping-pong round trips/s", *per_s, per_s[1] / per_s[0], *target("ping-pong", *per_s)),
        ("ping-pong p50 latency (us)", *p50, p50[1] / p50[0], "", None),
        ("ping-pong p99 latency (us)", *p99, p99[1] / p99[0], "", None),
        ("50 concurrent, round trips/s", raw_conc, bus_conc, bus_conc / raw_conc,
         *target("50 concurrent", raw_conc, bus_conc)),
        ("one-way publish, msgs/s", raw_rate, bus_rate, bus_rate / raw_rate, *target("one-way", raw_rate, bus_rate)),
        ("one-way received", raw_got["count"], bus_got["count"], None, f"= {n_oneway:,}",
         bus_got["count"] == n_oneway),
        ("one-way, 1 publisher in turn", raw_rate, seq_rate, seq_rate / raw_rate,
         *target("one-way", raw_rate, seq_rate)),
        ("one-way in turn received", raw_got["count"], seq_got["count"], None, f"= {n_oneway:,}",
         seq_got["count"] == n_oneway),
    ]
    hiredis = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure-Python parser"
    print(f"redis:// between two processes ({'quick' if quick else 'full'}), redis-server {version} on loopback,"
          f" redis-py {redis.__version__} ({hiredis}), {os.cpu_count()} CPUs")
    print(f"{n_ping:,} ping-pongs, {n_conc:,} concurrent requests, {n_oneway:,} one-way messages of {len(BODY)} bytes"
          f" ({size} bytes in the bus's frame)")
    print(f"{'figure':<32} {'raw':>10} {'addrbus':>10} {'ratio':>7} {'target':>9}")
    missed = 0
    for name, raw_v, bus_v, ratio, goal, met in rows:
        verdict = "" if met is None else ("ok" if met else "SHORT")
        missed += met is False
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        print(f"{name:<32} {raw_v:>10,.1f} {bus_v:>10,.1f} {ratio_text:>7} {goal:>9} {verdict}")
    phases.print_cpu()
    print(f"bus drops: sender {({k: v for k, v in sender_stats.items() if 'drop' in k and v})},"
          f" receiver {bus_got['drops']}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    add_uvloop_option(parser)
    parser.add_argument("--profile", choices=["child", "parent"], help="profile one side's bus phases")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--child", nargs=2, metavar=("URL", "NS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, ns = args.child
        run(child(url, ns, args.profiler))
        return
    server = RedisServer()
    try:
        missed = run(parent(server.url, server.version, args.quick, args.profile, args.profiler), args.uvloop)
    finally:
        server.stop()
    raise SystemExit(missed)


if __name__ == "__main__":
    main()
