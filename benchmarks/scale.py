"""Routing at scale: many addresses on one node, many nodes on one Redis, delivery by interest, large bodies.

Run inside a private network namespace (udp:// is measured too; nothing leaves)::

    scripts/in-netns .venv/bin/python benchmarks/scale.py [--quick] [--phase NAME ...]

It starts its own redis-server on a free loopback port (never a shared one)
and uses a random multicast group on 127.0.0.1 with TTL 0. Phases:

* ``addresses``: one node consumes 1, 1,000 and 10,000 addresses on the memory
  hub, udp:// and redis://; ``start()`` must succeed, a peer must be able to route
  to the last address within 2 s of ``start()`` being called, and the request
  p50 to it must stay within 10 % of the 1-address figure of the same run.
* ``rest``: 10, 50 and 100 nodes on one Redis (this process hosts them, one
  address each). What Redis sends them at rest (``INFO stats``
  ``total_net_output_bytes`` over the window, per node), beside the same number of
  raw redis-py clients doing the plain all-to-all heartbeat a user would write
  (each publishes a 100-byte ping per second on one channel they all read); a
  consumer added on one node, routable from all others (target 1 s); a node in
  a child process SIGKILLed while it owes requests: when they fail
  ``RecipientGone`` and when it has left every ``nodes()`` (target 3 s).
* ``udp-rest``: 10, 50 and 100 nodes on one multicast group at rest: the frames
  each receives a second (one ping per other node per heartbeat).
* ``interest``: 50 nodes on one Redis, one address consumed by 2 of them, 10,000
  publishes from a third: how much the other 47 nodes' ``frames.received`` grew
  (control traffic only), beside what a node of a broadcast bus would get (every
  publish).
* ``bodies``: request throughput with 1 KB and 60 KB bodies on redis:// and
  udp:// (50 concurrent requesters): bytes grow 60 times, throughput must not
  fall more than 60 times; raw redis-py round trips of the same sizes beside it.

The exit status is the number of targets missed.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory leads sys.path, and benchmarks/redis.py
# would shadow the redis package.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import functools  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402
from _harness import PHASE_LIMIT, RedisServer  # noqa: E402 (benchmarks/_harness.py)

from addrbus import EventBus, RecipientGone  # noqa: E402

PHASES = ("addresses", "rest", "udp-rest", "interest", "bodies")
missed: list[str] = []


def check(ok: bool, what: str) -> str:
    if not ok:
        missed.append(what)
    return "ok" if ok else "SHORT"


def udp_url() -> str:
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    return f"udp://{group}:{random.randint(20000, 60000)}?interface=127.0.0.1&ttl=0"


def namespace() -> str:
    return f"scale-{random.getrandbits(40):010x}"


async def until(check_: Callable[[], bool], bound: float) -> float:
    """Wait (bounded) until ``check_()`` holds; return the seconds it took, or inf."""
    t0 = time.perf_counter()
    while not check_():
        if time.perf_counter() - t0 > bound:
            return float("inf")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


async def interleaved_p50(requests: list[Callable[[], Awaitable[Any]]], count: int) -> list[float]:
    """Return each request's median latency in microseconds, the requests taken in turn.

    Taking them in turn, not one series after another, gives each the same
    state of the machine (frequency, other load), so their ratio means something.
    """
    for _ in range(count // 10):
        for request in requests:
            await request()  # warm-up
    latencies: list[list[float]] = [[] for _ in requests]
    async with asyncio.timeout(PHASE_LIMIT):
        for _ in range(count):
            for request, series in zip(requests, latencies, strict=True):
                t0 = time.perf_counter()
                await request()
                series.append(time.perf_counter() - t0)
    return [statistics.median(series) * 1e6 for series in latencies]


# -- addresses -------------------------------------------------------------------------------------


async def echo(body: int) -> int:
    return body


async def addresses(redis_url: str, quick: bool) -> None:
    print("\n10,000 consumed addresses on one node (a peer requests the last one; the three nodes' requests in turn)")
    print(f"{'transport':10} {'addresses':>9} {'start s':>8} {'routable s':>10} {'p50 us':>8} {'vs 1':>6}  target")
    count = 500 if quick else 3000
    sizes = (1, 1_000, 10_000)
    for name, url in (("memory", f"memory://scale-{random.getrandbits(32):x}"), ("udp", udp_url()),
                      ("redis", redis_url)):
        pairs: list[tuple[EventBus, EventBus]] = []
        timings = []
        try:
            for n in sizes:
                ns = namespace()
                consumer, peer = EventBus(url, namespace=ns), EventBus(url, namespace=ns)
                pairs.append((consumer, peer))
                for i in range(n):
                    consumer.on(f"scale.addr.{i}", echo)
                await peer.start()
                t0 = time.perf_counter()
                await consumer.start()
                started = time.perf_counter() - t0
                await peer.wait_for_handlers(f"scale.addr.{n - 1}", timeout=30)
                timings.append((started, time.perf_counter() - t0))
            requests = [functools.partial(peer.request, f"scale.addr.{n - 1}", 1, timeout=5)
                        for n, (_, peer) in zip(sizes, pairs, strict=True)]
            medians = await interleaved_p50(requests, count)
        finally:
            for consumer, peer in pairs:
                await peer.stop()
                await consumer.stop()
        for n, (started, routable), median in zip(sizes, timings, medians, strict=True):
            ratio = median / medians[0]
            ok = check(routable <= 2.0 and abs(ratio - 1) <= 0.10, f"addresses {name} {n:,}")
            print(f"{name:10} {n:>9,} {started:>8.3f} {routable:>10.3f} {median:>8.1f} {ratio:>6.2f}  "
                  f"routable <= 2 s, p50 within 10 %: {ok}")


# -- many nodes on one Redis -----------------------------------------------------------------------


async def start_nodes(url: str, ns: str, n: int) -> list[EventBus]:
    buses = [EventBus(url, namespace=ns) for _ in range(n)]
    for i, bus in enumerate(buses):
        bus.on(f"scale.node.{i}", lambda body: body)
    for bus in buses:
        await bus.start()
    took = await until(lambda: all(len(bus.nodes()) == n for bus in buses), 60)
    if took == float("inf"):
        raise RuntimeError(f"{n} nodes did not all see each other within 60 s")
    return buses


async def output_rate(server: RedisServer, window: float) -> float:
    """Return the bytes per second Redis sent its clients over ``window`` seconds."""
    before = int(server.info("stats")["total_net_output_bytes"])
    await asyncio.sleep(window)
    return (int(server.info("stats")["total_net_output_bytes"]) - before) / window


async def raw_heartbeats(server: RedisServer, n: int, window: float) -> float:
    """Return Redis's output per second while ``n`` raw clients heartbeat all-to-all on one channel."""
    clients = [aioredis.Redis.from_url(server.url, protocol=2) for _ in range(n)]
    subs = [client.pubsub() for client in clients]
    for sub in subs:
        await sub.subscribe("raw:heartbeats")
    stop = asyncio.Event()

    async def drain(sub: Any) -> None:
        while not stop.is_set():
            await sub.get_message(timeout=0.2)

    async def beat(client: Any, i: int) -> None:
        ping = f"{i:016x}".encode() * 6 + b"ping"  # 100 bytes: a node id, a seq, a heartbeat
        await asyncio.sleep(random.random())
        while not stop.is_set():
            await client.publish("raw:heartbeats", ping)
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(drain(sub)) for sub in subs]
    tasks += [asyncio.create_task(beat(client, i)) for i, client in enumerate(clients)]
    await asyncio.sleep(1.5)
    rate = await output_rate(server, window)
    stop.set()
    await asyncio.gather(*tasks)
    for sub in subs:
        await sub.aclose()  # type: ignore[no-untyped-call]
    for client in clients:
        await client.aclose()
    return rate


CHILD = """
import asyncio, sys
from addrbus import EventBus
async def main():
    bus = EventBus(sys.argv[1], namespace=sys.argv[2])
    @bus.on("scale.victim")
    async def never(body: int) -> int:
        await asyncio.Event().wait()
        return body
    await bus.start()
    print(bus.node_id, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def kill_one(buses: list[EventBus], url: str, ns: str) -> tuple[float, float, str]:
    """SIGKILL a node of a child process that owes requests; return (all failed, left every nodes(), errors)."""
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, url, ns, stdout=asyncio.subprocess.PIPE)
    try:
        assert child.stdout is not None
        victim = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().strip()
        if await until(lambda: all("scale.victim" in bus.nodes().get(victim, {}) for bus in buses), 30) == float("inf"):
            raise RuntimeError("the child's node was not seen by every node")
        owed = [asyncio.ensure_future(bus.request("scale.victim", 1, timeout=30)) for bus in buses[:10]]
        await asyncio.sleep(0.3)  # the requests reach the child, whose handler holds them
        t0 = time.perf_counter()
        child.send_signal(signal.SIGKILL)
        done, _ = await asyncio.wait(owed, timeout=10)
        failed = time.perf_counter() - t0 if len(done) == len(owed) else float("inf")
        left = await until(lambda: all(victim not in bus.nodes() for bus in buses), 10)
        gone = time.perf_counter() - t0 if left != float("inf") else left
        kinds = sorted({type(task.exception()).__name__ for task in done if task.exception() is not None})
        if any(not isinstance(task.exception(), RecipientGone) for task in done):
            failed = float("inf")
        return failed, gone, ",".join(kinds) or "none"
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def routable_everywhere(buses: list[EventBus]) -> float:
    """Add a consumer on the first node; return the seconds until every other node routes to it."""
    t0 = time.perf_counter()
    buses[0].on("scale.new", lambda body: body)
    first = buses[0].node_id
    took = await until(lambda: all(bus.nodes().get(first, {}).get("scale.new") for bus in buses[1:]), 10)
    return took if took == float("inf") else time.perf_counter() - t0


async def rest(server: RedisServer, quick: bool) -> None:
    window = 3.0 if quick else 10.0
    print(f"\nNodes on one Redis at rest (heartbeat 1 s; Redis output over {window:g} s, per node)")
    print(f"{'nodes':>5} {'raw all-to-all B/s':>19} {'addrbus B/s':>12} {'new consumer s':>15} "
          f"{'kill: failed s':>15} {'gone s':>7}  target")
    for n in (10, 50, 100):
        raw = await raw_heartbeats(server, n, window) / n
        ns = namespace()
        buses = await start_nodes(server.url, ns, n)
        try:
            await asyncio.sleep(2.0)  # the start's exchanges are over
            rate = await output_rate(server, window) / n
            new = await routable_everywhere(buses)
            failed, gone, kinds = await kill_one(buses, server.url, ns)
        finally:
            await asyncio.gather(*(bus.stop() for bus in buses))
        ok = check(rate <= 2048 and new <= 1.0 and failed <= 3.0 and gone <= 3.0, f"rest {n}")
        print(f"{n:>5} {raw:>19,.0f} {rate:>12,.0f} {new:>15.3f} {failed:>15.3f} {gone:>7.3f}  "
              f"<= 2,048 B/s, 1 s, 3 s ({kinds}): {ok}")


async def udp_rest(quick: bool) -> None:
    """udp:// at rest: every node pings everyone, so each receives one ping per other node per heartbeat."""
    window = 3.0 if quick else 10.0
    print(f"\nNodes on one multicast group at rest (heartbeat 1 s, this process hosts them; over {window:g} s)")
    print(f"{'nodes':>5} {'frames/s each node receives':>28} {'bytes/s (ping datagrams)':>25}")
    for n in (10, 50, 100):
        url, ns = udp_url(), namespace()
        buses = await start_nodes(url, ns, n)
        try:
            await asyncio.sleep(2.0)
            before = sum(bus.stats()["frames.received"] for bus in buses)
            await asyncio.sleep(window)
            rate = (sum(bus.stats()["frames.received"] for bus in buses) - before) / window / n
        finally:
            await asyncio.gather(*(bus.stop() for bus in buses))
        size = 21 + len(ns) + PING_FRAME
        print(f"{n:>5} {rate:>28,.1f} {rate * size:>25,.0f}")


PING_FRAME = 160  # bytes of a clear membership ping frame (docs/scaling.md)


# -- delivery by interest --------------------------------------------------------------------------


async def interest(server: RedisServer, quick: bool) -> None:
    total = 2_000 if quick else 10_000
    buses = await start_nodes(server.url, namespace(), 50)
    got = [0, 0]
    try:
        for i in (0, 1):
            buses[i].on("scale.hot", lambda body, i=i: got.__setitem__(i, got[i] + 1))
        await buses[2].wait_for_handlers("scale.hot", 2, timeout=10)
        await until(lambda: all(bus.nodes().get(buses[1].node_id, {}).get("scale.hot") for bus in buses[3:]), 10)
        others = buses[3:]
        before = [bus.stats()["frames.received"] for bus in others]
        t0 = time.perf_counter()
        for n in range(total):
            await buses[2].publish("scale.hot", n)
        await until(lambda: got == [total, total], 60)
        elapsed = time.perf_counter() - t0
        grown = [bus.stats()["frames.received"] - b for bus, b in zip(others, before, strict=True)]
    finally:
        await asyncio.gather(*(bus.stop() for bus in buses))
    control = 4 * (elapsed + 1)  # ring pings and pongs: about 4 a heartbeat, and a heartbeat of slack
    ok = check(got == [total, total] and max(grown) <= control, "interest")
    print(f"\n50 nodes on one Redis, 1 address consumed by 2, {total:,} publishes in {elapsed:.2f} s")
    print(f"  consumers received {got[0]:,} and {got[1]:,}; a node of a broadcast bus would receive {total:,}")
    print(f"  the other 47 nodes' frames.received grew by {min(grown)} to {max(grown)} "
          f"(control traffic: at most {control:.0f}): {ok}")


# -- body sizes ------------------------------------------------------------------------------------


async def throughput(url: str, size: int, total: int) -> float:
    ns = namespace()
    service, client = EventBus(url, namespace=ns), EventBus(url, namespace=ns)
    service.on("scale.echo", lambda body: len(body))
    body = "x" * size
    try:
        await service.start()
        await client.start()
        await client.wait_for_handlers("scale.echo", timeout=10)

        async def worker() -> None:
            for _ in range(total // 50):
                await client.request("scale.echo", body, timeout=10)

        t0 = time.perf_counter()
        async with asyncio.timeout(PHASE_LIMIT):
            await asyncio.gather(*(worker() for _ in range(50)))
        return total // 50 * 50 / (time.perf_counter() - t0)
    finally:
        await client.stop()
        await service.stop()


async def raw_throughput(url: str, size: int, total: int) -> float:
    """Raw redis-py: 50 concurrent round trips of ``size`` bytes there and a few bytes back."""
    client = aioredis.Redis.from_url(url, protocol=2)
    server = aioredis.Redis.from_url(url, protocol=2)
    sub_server, sub_client = server.pubsub(), client.pubsub()
    await sub_server.subscribe("raw:req")
    await sub_client.subscribe("raw:rep")
    waiting: dict[bytes, asyncio.Future[None]] = {}
    payload = b"x" * size

    async def serve() -> None:
        async for msg in sub_server.listen():
            if msg["type"] == "message":
                await server.publish("raw:rep", msg["data"][:16])

    async def replies() -> None:
        async for msg in sub_client.listen():
            if msg["type"] == "message":
                future = waiting.pop(msg["data"], None)
                if future is not None:
                    future.set_result(None)

    tasks = [asyncio.create_task(serve()), asyncio.create_task(replies())]

    async def worker(w: int) -> None:
        for k in range(total // 50):
            tag = f"{w:08x}{k:08x}".encode()
            future = waiting[tag] = asyncio.get_running_loop().create_future()
            await client.publish("raw:req", tag + payload[16:])
            await asyncio.wait_for(future, 10)

    try:
        t0 = time.perf_counter()
        async with asyncio.timeout(PHASE_LIMIT):
            await asyncio.gather(*(worker(w) for w in range(50)))
        return total // 50 * 50 / (time.perf_counter() - t0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sub_server.aclose()  # type: ignore[no-untyped-call]
        await sub_client.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
        await server.aclose()


async def bodies(server: RedisServer, quick: bool) -> None:
    total = 1_000 if quick else 5_000
    print("\nRequests of 1 KB and 60 KB bodies, 50 concurrent (requests/s)")
    print(f"{'transport':10} {'1 KB':>9} {'60 KB':>9} {'falls by':>9}  target")
    raw_small = await raw_throughput(server.url, 1024, total)
    raw_large = await raw_throughput(server.url, 60 * 1024, total)
    print(f"{'raw redis':10} {raw_small:>9,.0f} {raw_large:>9,.0f} {raw_small / raw_large:>8.1f}x")
    for name, url in (("redis", server.url), ("udp", udp_url())):
        small = await throughput(url, 1024, total)
        large = await throughput(url, 60 * 1024, total)
        fall = small / large
        print(f"{name:10} {small:>9,.0f} {large:>9,.0f} {fall:>8.1f}x  <= 60x: {check(fall <= 60, f'bodies {name}')}")


async def main(phases: list[str], quick: bool) -> int:
    server = RedisServer()
    try:
        print(f"routing at scale ({'quick' if quick else 'full'}), redis-server {server.version} on loopback")
        if "addresses" in phases:
            await addresses(server.url, quick)
        if "rest" in phases:
            await rest(server, quick)
        if "udp-rest" in phases:
            await udp_rest(quick)
        if "interest" in phases:
            await interest(server, quick)
        if "bodies" in phases:
            await bodies(server, quick)
    finally:
        server.stop()
    print(f"\n{len(missed)} target(s) missed" + (f": {', '.join(missed)}" if missed else ""))
    return len(missed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer messages")
    parser.add_argument("--phase", action="append", choices=PHASES, help="run only these phases (repeatable)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.phase or list(PHASES), args.quick)))
