"""udp:// between two processes, each figure beside raw datagram sockets from the same run.

Run inside a private network namespace (nothing can leave the machine)::

    scripts/in-netns .venv/bin/python benchmarks/multicast.py [--quick] [--profile child|parent]
                                                           [--profiler cprofile|pyinstrument]

This process (the requester, the publisher) starts a child process (the
service, the subscriber). Both run one bus on a random group of 239.255.0.0/16
(interface 127.0.0.1, TTL 0) and, beside it, raw non-blocking UDP sockets
driven the way the transport drives its own (``loop.add_reader``, one future
per exchange), doing the same exchange with datagrams of the same size:

* ping-pong: one request at a time; raw: one datagram there and back on 127.0.0.1.
* 50 concurrent: 50 requesters in a loop; raw: 50 datagrams outstanding.
* one-way: publish N messages; raw: N datagrams to a multicast group, with the
  transport's own pacing (``rate``, burst, yields). Throughput runs from the
  first send to the last receipt (both clocks are the host's monotonic clock).

``--profile child`` profiles the child during the bus phases (cProfile, or
pyinstrument with ``--profiler pyinstrument``) and prints where its time goes;
``--profile parent`` does the same for this process. Each phase also reports
the CPU time each process spent per message, profiler or not.
The exit status is the number of targets missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import time
from typing import Any

from _harness import (  # benchmarks/_harness.py
    Child,
    Phases,
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
from addrbus.transports.udp.send import BURST, BURST_BYTES, DEFAULT_RATE, OVERHEAD
from addrbus.transports.udp.wire import HEADER_SIZE, RCVBUF, kernel_drops

ECHO, SINK = "bench.echo", "bench.sink"
BODY = "x" * 200  # the one-way payload
DRAIN = 256
NODE = "0123456789abcdef"


def in_private_netns() -> bool:
    """Tell whether this runs under scripts/in-netns (a namespace holding only lo)."""
    return os.environ.get("ADDRBUS_NETNS") == "1" and [n for _, n in socket.if_nameindex()] == ["lo"]


def datagram_size(kind: str, body: Any, ns: str) -> int:
    """Return the size of the datagram the bus sends for one message (ids as long as real ones)."""
    msg_id = f"{NODE}-{123456:x}"
    env = Envelope(kind=kind, ns=ns, addr=ECHO if kind == "req" else SINK, id=msg_id, src=NODE,  # type: ignore[arg-type]
                   ts=time.time(), **({"cid": msg_id, "rto": NODE, "dst": NODE, "dl": time.time()}
                                     if kind == "req" else {}))
    return HEADER_SIZE + len(ns.encode()) + len(encode_frame(env, encode_body(body)))


def udp_socket(bind: tuple[str, int], group: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if group is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(bind)
    if group is not None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # as the transport gets it
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket, each: Any) -> None:
    for _ in range(DRAIN):
        try:
            data, addr = sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return
        each(data, addr)


# -- the child: service and subscriber -----------------------------------------------------------


async def child(url: str, ns: str, raw_group: str, raw_port: int, profiler_kind: str) -> None:
    loop = asyncio.get_running_loop()
    counts = {"bus": 0, "raw": 0}
    last = {"bus": 0.0, "raw": 0.0}
    profiler = Profiler(profiler_kind)
    bus = EventBus(url, namespace=ns)

    @bus.on(ECHO)
    async def echo(n: int) -> int:
        return n

    @bus.on(SINK)
    async def sink(body: str) -> None:
        counts["bus"] += 1
        last["bus"] = time.monotonic()

    echo_sock = udp_socket(("127.0.0.1", 0))
    sink_sock = udp_socket((raw_group, raw_port), raw_group)

    def on_raw(data: bytes, addr: Any) -> None:
        counts["raw"] += 1
        last["raw"] = time.monotonic()

    loop.add_reader(echo_sock.fileno(), drain, echo_sock, lambda data, addr: echo_sock.sendto(data, addr))
    loop.add_reader(sink_sock.fileno(), drain, sink_sock, on_raw)
    async with bus:
        await serve_commands(counts, last, profiler, lambda which: (
            {k: v for k, v in bus.stats().items() if "drop" in k and v} if which == "bus"
            else {"kernel_drops": kernel_drops(sink_sock)}), ready={"echo_port": echo_sock.getsockname()[1]})
    for sock in (echo_sock, sink_sock):
        loop.remove_reader(sock.fileno())
        sock.close()
    profiler.report("child (service and subscriber)")


# -- the parent: requester and publisher ---------------------------------------------------------


class RawPeer:
    """A raw datagram client: one future per outstanding datagram, keyed by a sequence number."""

    def __init__(self, dest: tuple[str, int], size: int) -> None:
        self.sock = udp_socket(("127.0.0.1", 0))
        self.dest = dest
        self.pad = bytes(max(size - 4, 0))
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.seq = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), drain, self.sock, self._on_datagram)

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        future = self.waiting.pop(int.from_bytes(data[:4], "big"), None)
        if future is not None and not future.done():
            future.set_result(None)

    async def round_trip(self) -> None:
        self.seq += 1
        future = self.waiting[self.seq] = self.loop.create_future()
        self.sock.sendto(self.seq.to_bytes(4, "big") + self.pad, self.dest)
        await future  # each phase runs under one overall timeout, as cheap as the bus's own timer

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def raw_blast(count: int, size: int, dest: tuple[str, int]) -> float:
    """Send ``count`` datagrams paced exactly as the transport paces; return the start time."""
    loop = asyncio.get_running_loop()
    sock = udp_socket(("127.0.0.1", 0))
    payload = bytes(size)
    per_s = DEFAULT_RATE * 1024 * 1024
    next_slot, since_yield = 0.0, 0
    start = time.monotonic()
    for _ in range(count):
        now = loop.time()
        slot = max(next_slot, now - BURST_BYTES / per_s)
        next_slot = slot + (size + OVERHEAD) / per_s
        if slot > now:
            since_yield = 0
            await asyncio.sleep(slot - now)
        for _ in range(1000):  # bounded retries on a full socket
            try:
                sock.sendto(payload, dest)
                break
            except (BlockingIOError, InterruptedError, OSError):
                await asyncio.sleep(0.0005)
        since_yield += 1
        if since_yield >= BURST:
            since_yield = 0
            await asyncio.sleep(0)
    sock.close()
    return start


async def parent(quick: bool, profile: str | None, profiler_kind: str) -> int:
    n_ping, n_conc, n_oneway = (1_000, 5_000, 5_000) if quick else (5_000, 20_000, 20_000)
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    port, raw_port = random.sample(range(20000, 60000), 2)
    raw_group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    url = f"udp://{group}:{port}?interface=127.0.0.1&ttl=0"
    ns = "bench"
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--profiler", profiler_kind, "--child", url, ns, raw_group, str(raw_port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    kid = Child(process)
    profiler = Profiler(profiler_kind)

    phases = Phases(kid, profile, profiler)
    phase = phases.run

    try:
        hello = await kid.read()
        raw = RawPeer(("127.0.0.1", hello["echo_port"]), datagram_size("req", 1, ns))
        size = datagram_size("pub", BODY, ns)
        async with EventBus(url, namespace=ns) as bus:
            await bus.wait_for_handlers(SINK, 1, timeout=10)
            await bus.wait_for_handlers(ECHO, 1, timeout=10)
            await timed(200, raw.round_trip)  # warm both paths
            await timed(200, lambda: bus.request(ECHO, 1, timeout=5))

            async def publish_all() -> tuple[float, dict[str, Any]]:
                t0 = time.monotonic()
                for _ in range(n_oneway):
                    await bus.publish(SINK, BODY)
                return t0, await kid.command("expect", "bus", n_oneway)

            async def blast_all() -> tuple[float, dict[str, Any]]:
                t0 = await raw_blast(n_oneway, size, (raw_group, raw_port))
                return t0, await kid.command("expect", "raw", n_oneway)

            raw_lat = await phase("ping-pong raw", n_ping, lambda: timed(n_ping, raw.round_trip), False)
            bus_lat = await phase("ping-pong bus", n_ping,
                                  lambda: timed(n_ping, lambda: bus.request(ECHO, 1, timeout=5)), True)
            raw_conc = await phase("50 concurrent raw", n_conc, lambda: concurrently(n_conc, raw.round_trip), False)
            bus_conc = await phase("50 concurrent bus", n_conc,
                                   lambda: concurrently(n_conc, lambda: bus.request(ECHO, 1, timeout=30)), True)
            await kid.command("reset")
            start, raw_got = await phase("one-way raw", n_oneway, blast_all, False)
            start_bus, bus_got = await phase("one-way bus", n_oneway, publish_all, True)
            sender_stats = bus.stats()
        raw.close()
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
    raw_loss = 100 * (1 - raw_got["count"] / n_oneway)
    bus_loss = 100 * (1 - bus_got["count"] / n_oneway)
    p50 = (statistics.median(raw_lat) * 1e6, statistics.median(bus_lat) * 1e6)
    p99 = (statistics.quantiles(raw_lat, n=100)[98] * 1e6, statistics.quantiles(bus_lat, n=100)[98] * 1e6)
    per_s = (n_ping / sum(raw_lat), n_ping / sum(bus_lat))
    rows = [
        # figure, raw, bus, ratio bus/raw, target text, met
        ("ping-pong p50 latency (us)", *p50, p50[1] / p50[0], "<= 1.5x", p50[1] <= 1.5 * p50[0]),
        ("ping-pong p99 latency (us)", *p99, p99[1] / p99[0], "", None),
        ("ping-pong round trips/s", *per_s, per_s[1] / per_s[0], ">= 0.8x", per_s[1] >= 0.8 * per_s[0]),
        ("50 concurrent, round trips/s", raw_conc, bus_conc, bus_conc / raw_conc, ">= 0.5x",
         bus_conc >= 0.5 * raw_conc),
        ("one-way publish, msgs/s", raw_rate, bus_rate, bus_rate / raw_rate, ">= 0.5x", bus_rate >= 0.5 * raw_rate),
        ("one-way loss (%)", raw_loss, bus_loss, None, "< 0.1", bus_loss < 0.1),
    ]
    print(f"udp:// between two processes ({'quick' if quick else 'full'}): {n_ping:,} ping-pongs,"
          f" {n_conc:,} concurrent requests, {n_oneway:,} one-way messages of {size} bytes")
    print(f"{'figure':<32} {'raw':>10} {'addrbus':>10} {'ratio':>7} {'target':>8}")
    missed = 0
    for name, raw_v, bus_v, ratio, target, met in rows:
        verdict = "" if met is None else ("ok" if met else "SHORT")
        missed += met is False
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        print(f"{name:<32} {raw_v:>10,.1f} {bus_v:>10,.1f} {ratio_text:>7} {target:>8} {verdict}")
    phases.print_cpu()
    print(f"bus drops: sender {({k: v for k, v in sender_stats.items() if 'drop' in k and v})},"
          f" receiver {bus_got['drops']}; raw receiver {raw_got['drops']}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    add_uvloop_option(parser)
    parser.add_argument("--profile", choices=["child", "parent"], help="profile one side's bus phases")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--child", nargs=4, metavar=("URL", "NS", "RAW_GROUP", "RAW_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not in_private_netns():
        raise SystemExit("run under scripts/in-netns: multicast benchmarks stay in a private network namespace")
    if args.child:
        url, ns, raw_group, raw_port = args.child
        run(child(url, ns, raw_group, int(raw_port), args.profiler))
        return
    raise SystemExit(run(parent(args.quick, args.profile, args.profiler), args.uvloop))


if __name__ == "__main__":
    main()
