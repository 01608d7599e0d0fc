"""addrbus beside its in-process peers, TinyBus and Lahja, and the raw asyncio baseline, in one run.

Run: ``make peers`` (a venv of its own with the ``bench`` dependency group), or, where
the peers are installed, ``python benchmarks/peers.py [--quick] [--uvloop]``. A peer that
is not installed (TinyBus needs Python 3.12+) is left out, and the table says so.

Every figure is a rate (round trips or deliveries a second), the median of several
runs interleaved with the others', and its ratio to the raw baseline of this run:

* request/reply, 1 requester and 100 requesters: raw is a future per request that a
  server task resolves (as ``inprocess.py``). TinyBus awaits the handler in the
  caller's task; Lahja's endpoints talk over a Unix socket (it is an inter-process
  bus; both endpoints live in this process here).
* publish 1 -> 10 listeners, all delivered: raw awaits ten callbacks per message.
  TinyBus's ``publish`` gathers its listeners; Lahja broadcasts to an endpoint with
  ten subscriptions.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import inprocess
from _harness import loop_name, run


def usable(name: str) -> str:
    """Return "" if the peer ``name`` imports here, else why not."""
    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        importlib.import_module(name)
    except Exception as exc:  # Lahja's trio 0.16 raises TypeError on import on 3.13
        return f"does not import on Python {platform.python_version()} ({type(exc).__name__})"
    return ""


WHY_NOT = {"TinyBus": usable("tinybus"), "Lahja": usable("lahja")}
HAS_TINYBUS, HAS_LAHJA = not WHY_NOT["TinyBus"], not WHY_NOT["Lahja"]
if HAS_TINYBUS:  # at module level: TinyBus resolves its handlers' annotations in their module
    from tinybus import EventBus as TinyBus
    from tinybus import Message as TinyMessage


# -- TinyBus ---------------------------------------------------------------------------------------

async def tinybus_round_trips(requesters: int, count: int) -> float:
    bus = TinyBus()

    async def echo(msg: TinyMessage[int]) -> int:
        return msg.body

    bus.consumer("echo", echo)

    async def requester(n: int) -> None:
        for i in range(n):
            await bus.request("echo", i)

    per = count // requesters
    start = time.perf_counter()
    await asyncio.gather(*(requester(per) for _ in range(requesters)))
    return per * requesters / (time.perf_counter() - start)


async def tinybus_fanout(listeners: int, count: int) -> float:
    from pydantic import BaseModel

    class News(BaseModel):
        n: int

    bus = TinyBus()
    received = [0]

    async def listener(news: News) -> None:
        received[0] += 1

    for _ in range(listeners):
        bus.on("news", listener)
    start = time.perf_counter()
    for i in range(count):
        await bus.publish("news", News(n=i))
    elapsed = time.perf_counter() - start
    assert received[0] == listeners * count
    return received[0] / elapsed


# -- Lahja -----------------------------------------------------------------------------------------

if HAS_LAHJA:  # at module level: Lahja pickles its events between endpoints
    from lahja import AsyncioEndpoint, BaseEvent, BaseRequestResponseEvent, ConnectionConfig

    class Reply(BaseEvent):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            self.n = n

    class Ask(BaseRequestResponseEvent[Reply]):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            self.n = n

        @staticmethod
        def expected_response_type() -> type[Reply]:
            return Reply

    class News(BaseEvent):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            self.n = n


async def lahja_round_trips(requesters: int, count: int) -> float:
    reply, ask = Reply, Ask
    with tempfile.TemporaryDirectory() as tmp:
        config = ConnectionConfig(name="server", path=pathlib.Path(tmp) / "server.ipc")
        async with AsyncioEndpoint.serve(config) as server, AsyncioEndpoint("client").run() as client:
            await client.connect_to_endpoints(config)

            async def answer() -> None:
                async for event in server.stream(ask):
                    await server.broadcast(reply(event.n), event.broadcast_config())

            answering = asyncio.ensure_future(answer())
            await asyncio.wait_for(client.wait_until_any_endpoint_subscribed_to(ask), 10)

            async def requester(n: int) -> None:
                for i in range(n):
                    await client.request(ask(i))

            per = count // requesters
            start = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(requester(per) for _ in range(requesters))), 60)
            elapsed = time.perf_counter() - start
            answering.cancel()
    return per * requesters / elapsed


async def lahja_fanout(listeners: int, count: int) -> float:
    news = News
    total = listeners * count
    received = [0]
    done = asyncio.Event()

    def listener(event: Any) -> None:
        received[0] += 1
        if received[0] == total:
            done.set()

    with tempfile.TemporaryDirectory() as tmp:
        config = ConnectionConfig(name="server", path=pathlib.Path(tmp) / "server.ipc")
        async with AsyncioEndpoint.serve(config) as server, AsyncioEndpoint("client").run() as client:
            for _ in range(listeners):
                server.subscribe(news, listener)
            await client.connect_to_endpoints(config)
            await asyncio.wait_for(client.wait_until_any_endpoint_subscribed_to(news), 10)
            start = time.perf_counter()
            for i in range(count):
                await client.broadcast(news(i))
            await asyncio.wait_for(done.wait(), 60)
            elapsed = time.perf_counter() - start
    return received[0] / elapsed


# -- the table -------------------------------------------------------------------------------------

async def main(quick: bool) -> int:
    n = 20_000 if quick else 100_000
    slow_n = 1_000 if quick else 4_000  # Lahja's round trips cross a socket
    runs = 3 if quick else 5
    Scenario = dict[str, Callable[[], Awaitable[float]] | None]
    scenarios: list[tuple[str, Scenario]] = [
        ("request/reply, 1 requester (round trips/s)", {
            "raw": lambda: inprocess.raw_round_trips(1, n),
            "addrbus": lambda: inprocess.bus_round_trips(1, n),
            "TinyBus": (lambda: tinybus_round_trips(1, n)) if HAS_TINYBUS else None,
            "Lahja": (lambda: lahja_round_trips(1, slow_n)) if HAS_LAHJA else None,
        }),
        ("request/reply, 100 requesters (round trips/s)", {
            "raw": lambda: inprocess.raw_round_trips(100, n),
            "addrbus": lambda: inprocess.bus_round_trips(100, n),
            "TinyBus": (lambda: tinybus_round_trips(100, n)) if HAS_TINYBUS else None,
            "Lahja": (lambda: lahja_round_trips(100, slow_n)) if HAS_LAHJA else None,
        }),
        ("publish 1 -> 10 listeners (deliveries/s)", {
            "raw": lambda: inprocess.raw_fanout(10, n // 5),
            "addrbus": lambda: inprocess.bus_fanout(10, n // 5),
            "TinyBus": (lambda: tinybus_fanout(10, n // 5)) if HAS_TINYBUS else None,
            "Lahja": (lambda: lahja_fanout(10, slow_n // 2)) if HAS_LAHJA else None,
        }),
    ]
    print(f"Python {platform.python_version()}, {loop_name()} loop; "
          + "; ".join(f"{peer} {why or 'installed'}" for peer, why in WHY_NOT.items()))
    names = ["raw", "addrbus", "TinyBus", "Lahja"]
    print(f"{'figure':<48}" + "".join(f"{name:>20}" for name in names))
    behind = 0
    for title, fns in scenarios:
        rates: dict[str, list[float]] = {name: [] for name, fn in fns.items() if fn is not None}
        for _ in range(runs):  # interleaved, so that every library sees the same machine
            for name, fn in fns.items():
                if fn is not None:
                    rates[name].append(await fn())
        medians = {name: statistics.median(values) for name, values in rates.items()}
        raw = medians["raw"]
        cells = []
        for name in names:
            if name not in medians:
                cells.append(f"{'-':>20}")
            else:
                cells.append(f"{medians[name]:>12,.0f} {medians[name] / raw:>5.2f}x")
        print(f"{title:<48}" + "".join(cells))
        behind += any(value > medians["addrbus"] for name, value in medians.items() if name not in ("raw", "addrbus"))
    print("addrbus is ahead of every peer installed" if not behind else f"a peer is ahead in {behind} figure(s)")
    return behind


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages and runs")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (pip install 'addrbus[speed]')")
    args = parser.parse_args()
    sys.exit(1 if run(main(args.quick), args.uvloop) else 0)
