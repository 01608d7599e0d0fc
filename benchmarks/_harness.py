"""What the benchmarks share: a switchable profiler, timing helpers, a child process, a private redis-server."""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
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


class RedisServer:
    """A private redis-server on a free loopback port, spoken to over a plain socket.

    No redis-py here: ``benchmarks/redis.py`` shadows the package when this
    directory leads ``sys.path``.
    """

    def __init__(self) -> None:
        path = shutil.which("redis-server")
        if path is None:
            raise SystemExit("redis-server is not on PATH")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._tmp = tempfile.mkdtemp(prefix="addrbus-bench-")
        self.proc = subprocess.Popen(
            [path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._tmp, "--protected-mode", "no", "--loglevel", "warning", "--maxclients", "10000"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.version = self.info("server")["redis_version"]
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.01)  # a bounded poll while the server binds its port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def info(self, section: str) -> dict[str, str]:
        """Return one section of ``INFO`` as a dict of strings."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("no answer")
                data += chunk
            head, _, rest = data.partition(b"\r\n")
            if not head.startswith(b"$"):
                raise OSError(f"unexpected reply {head!r}")
            size = int(head[1:])
            while len(rest) < size:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("connection closed")
                rest += chunk
        lines = rest[:size].decode().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self._tmp, ignore_errors=True)
