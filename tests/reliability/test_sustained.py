"""Scenario 2: sustained encrypted publishing at 1,000 msg/s from another process.

Redis (and memory) deliver every message in order; multicast at least 99.9 %.
The receiver's RSS grows less than 10 MB after the warm-up and its event loop
lags less than 20 ms at the 99th percentile (a 10 ms ticker measures it). On
memory:// the sender cannot be another process: it is a second bus on the same
loop, with every frame serialised and sealed (``?serialize=1``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from addrbus import Message
from addrbus._wire.sealing import generate_key
from tests.conftest import unique
from tests.reliability._measure import Clock, LagMonitor, MemoryGrowth, Record, Scale, reorders, time_limit
from tests.reliability._procs import peers, start
from tests.reliability.conftest import Net

RATE = 1_000  # messages a second
SIZE = 300  # bytes of JSON body


async def publish_here(net: Net, key: str, address: str, seconds: float) -> tuple[int, int, float]:
    """Publish as ``_peer.py publish`` does, from a bus on this loop; return (sent, errors, seconds)."""
    bus = net.bus(serialize=True, shared_key=key)
    async with bus:
        await bus.wait_for_handlers(address, 1, timeout=20.0)
        loop = asyncio.get_running_loop()
        count, pad = int(RATE * seconds), "x" * (SIZE - 40)
        t0 = loop.time()
        for seq in range(count):
            ahead = t0 + seq / RATE - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await bus.publish(address, {"seq": seq, "pad": pad})
        return count, 0, loop.time() - t0


@time_limit(short=60, full=240)
async def test_sustained_encrypted_publishing(net: Net, record: Callable[..., Record], scale: Scale) -> None:
    seconds = scale.pick(4.0, 60.0)
    warmup = scale.pick(1.0, 10.0)
    key = generate_key()
    address = unique("feed")
    seqs: list[int] = []
    latencies: list[float] = []
    receiver = net.bus(serialize=True, shared_key=key)

    @receiver.consumer(address, max_queue=10_000)
    async def take(msg: Message[Any]) -> None:
        seqs.append(msg.body["seq"])
        latencies.append(time.time() - msg.timestamp)

    rec = record("2-sustained-publish", net.kind, rate=RATE, body_bytes=SIZE, seconds=seconds, warmup=warmup,
                 encrypted=True, sender="same loop" if net.kind == "memory" else "own process")
    lag = LagMonitor(0.01)
    # No tracemalloc here: its own bookkeeping (a trace per live block) would swell the RSS under test.
    growth = MemoryGrowth(trace=False)
    clock = Clock()
    await receiver.start()
    lag.start()
    try:
        async with peers() as started:
            if net.kind == "memory":
                sender = asyncio.get_running_loop().create_task(publish_here(net, key, address, seconds))
            else:
                peer = await start(started, "publish", net.url(), net.namespace, address, f"rate={RATE}",
                                   f"seconds={seconds}", f"size={SIZE}", f"lifetime={seconds + 60}",
                                   shared_key=key)
                await peer.expect("start")
            # Warm-up: connections, caches and the first allocations settle first.
            await asyncio.sleep(warmup)
            lag.lags.clear()
            growth.begin()
            if net.kind == "memory":
                sent, errors, took = await asyncio.wait_for(sender, seconds + 30)
            else:
                words = await peer.expect("done", timeout=seconds + 30)
                sent, errors, took = int(words[0]), int(words[1]), float(words[2])
            # The last frames are in flight for milliseconds: wait for them (bounded).
            for _ in range(100):
                if len(seqs) >= sent:
                    break
                await asyncio.sleep(0.05)
            growth.end()
    finally:
        await lag.stop()
    rec.seconds = round(clock(), 2)

    unique_seqs = set(seqs)
    rec.sent, rec.ok = sent, len(unique_seqs)
    rec.lost = sent - len(unique_seqs)
    rec.duplicates = len(seqs) - len(unique_seqs)
    rec.reorders = reorders(seqs)
    rec.latencies(latencies)
    rec.loop_lag_p99_ms = lag.p99_ms()
    rec.rss_growth_mb = growth.rss_mb
    stats = receiver.stats()
    rec.extra.update(
        replay_cache_entries=stats.get("crypto.remembered"), sender_errors=errors, sender_seconds=took,
        delivered_fraction=round(len(unique_seqs) / max(sent, 1), 5),
        kernel_drops=stats.get("transport.kernel_drops"),
        dropped={k: v for k, v in stats.items() if k.startswith("dropped.")},
    )

    rec.expect("sender_errors", errors, "==", 0)
    rec.expect("duplicates", rec.duplicates, "==", 0)
    if net.kind == "udp":
        rec.expect("delivered_fraction", rec.extra["delivered_fraction"], ">=", 0.999)
    else:
        rec.expect("lost", rec.lost, "==", 0)
        rec.expect("in_order", seqs == sorted(seqs), "==", True)
    rec.expect("rss_growth_mb", growth.rss_mb, "<", 10)
    rec.expect("loop_lag_p99_ms", rec.loop_lag_p99_ms, "<", 20)
    rec.assert_ok()
