"""What the two-process benchmarks share: a switchable profiler and timing helpers."""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys
import time
from typing import Any

PHASE_LIMIT = 120.0  # seconds: no phase may run longer, whatever is lost


class Profiler:
    """cProfile or pyinstrument, switched on for the bus phases only."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.used = False
        if kind == "pyinstrument":
            import pyinstrument

            self.sampler = pyinstrument.Profiler(interval=0.0002, async_mode="disabled")
        else:
            self.profile = cProfile.Profile()

    def switch(self, on: bool) -> None:
        self.used = True
        if self.kind == "pyinstrument":
            if on:
                self.sampler.start()
            else:
                self.sampler.stop()
        elif on:
            self.profile.enable()
        else:
            self.profile.disable()

    def report(self, who: str) -> None:
        if not self.used:
            return
        print(f"\n== {self.kind} profile of the {who}, bus phases only ==", file=sys.stderr)
        if self.kind == "pyinstrument":
            print(self.sampler.output_text(unicode=False, color=False), file=sys.stderr)
        else:
            pstats.Stats(self.profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)


async def timed(count: int, one: Any) -> list[float]:
    latencies = []
    async with asyncio.timeout(PHASE_LIMIT):
        for _ in range(count):
            t0 = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t0)
    return latencies


async def concurrently(total: int, one: Any, width: int = 50) -> float:
    async def worker() -> None:
        for _ in range(total // width):
            await one()

    t0 = time.perf_counter()
    async with asyncio.timeout(PHASE_LIMIT):
        await asyncio.gather(*(worker() for _ in range(width)))
    return total // width * width / (time.perf_counter() - t0)


class Child:
    """The benchmark's other process: told commands on stdin, answering JSON lines on stdout."""

    def __init__(self, process: asyncio.subprocess.Process, read_timeout: float = 60.0) -> None:
        self.process = process
        self.read_timeout = read_timeout

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), self.read_timeout)
        if not line:
            raise RuntimeError("the child process exited")
        return dict(json.loads(line))

    async def tell(self, *words: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((" ".join(map(str, words)) + "\n").encode())
        await self.process.stdin.drain()

    async def command(self, *words: Any) -> dict[str, Any]:
        await self.tell(*words)
        reply = await self.read()
        if "ok" not in reply:
            await self.read()
        return reply
