"""What the benchmarks share: a switchable profiler, timing helpers, a child process, a private redis-server."""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
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


class PrivateServer:
    """A private server process on a free loopback port, never a shared one; ready once ``probe()`` succeeds.

    A subclass names its program in ``program``, builds its command line in
    :meth:`command` (with :attr:`port` and the scratch directory :attr:`tmp`)
    and says in :meth:`probe` whether it answers, raising ``OSError`` until then.
    """

    program = ""

    def __init__(self) -> None:
        path = shutil.which(self.program) or shutil.which(self.program, path="/usr/sbin:/usr/bin")
        if path is None:
            raise SystemExit(f"{self.program} is not installed (apt-get install {self.program})")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.path = path
        self.tmp = tempfile.mkdtemp(prefix="addrbus-bench-")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.probe()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.01)  # a bounded poll while the server binds its port

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> None:
        """Return once the server answers; raise ``OSError`` while it does not."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


class RedisServer(PrivateServer):
    """A private redis-server, spoken to over a plain socket.

    No redis-py here: ``benchmarks/redis.py`` shadows the package when this
    directory leads ``sys.path``.
    """

    program = "redis-server"

    def command(self) -> list[str]:
        return [self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.tmp, "--protected-mode", "no", "--loglevel", "warning", "--maxclients", "10000"]

    def probe(self) -> None:
        self.version = self.info("server")["redis_version"]

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


def say(**fields: Any) -> None:
    """Tell the parent one JSON line (the child's side of :class:`Child`)."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def serve_commands(counts: dict[str, int], last: dict[str, float], profiler: Profiler | None = None,
                         drops: Any = None, ready: dict[str, Any] | None = None) -> None:
    """Answer the parent's commands on stdin until ``quit`` (the child's side of :class:`Child`).

    ``profile on|off``, ``cpu``, ``reset``, and ``expect bus|raw N``: wait until
    ``counts[which]`` reaches N, or nothing arrived for half a second, then say
    the count, the last arrival and ``drops(which)``.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    say(**(ready or {"ready": True}))
    for _ in range(1000):  # bounded: a run sends a dozen commands
        command, *args = (await asyncio.wait_for(reader.readline(), 600)).decode().split() or ["quit"]
        if command == "quit":
            break
        if command == "profile" and profiler is not None:
            profiler.switch(args[0] == "on")
        elif command == "cpu":
            say(cpu=time.process_time())
        elif command == "reset":
            counts.update(bus=0, raw=0)
        elif command == "expect":
            which, want = args[0], int(args[1])
            for _ in range(200):
                seen = counts[which]
                if seen >= want:
                    break
                await asyncio.sleep(0.5)  # a pause in arrivals ends the wait: the parent's sends are done
                if counts[which] == seen:
                    break
            say(count=counts[which], last=last[which], drops={} if drops is None else drops(which))
        say(ok=True)


class Phases:
    """Run a benchmark's phases, noting the CPU time each process spent per message.

    With ``profile`` ``"child"`` or ``"parent"``, that side's profiler runs during
    the bus's phases only.
    """

    def __init__(self, kid: Child, profile: str | None = None, profiler: Profiler | None = None) -> None:
        self.kid, self.profile, self.profiler = kid, profile, profiler
        self.cpu: dict[str, tuple[float, float]] = {}  # phase -> CPU microseconds per message (parent, child)

    async def _profiling(self, on: bool) -> None:
        if self.profile == "child":
            await self.kid.command("profile", "on" if on else "off")
        elif self.profile == "parent" and self.profiler is not None:
            self.profiler.switch(on)

    async def run(self, name: str, count: int, run: Any, bus_side: bool = False) -> Any:
        """Run ``run()`` as the phase ``name`` of ``count`` messages; return what it returned."""
        if bus_side:
            await self._profiling(True)
        child_cpu = (await self.kid.command("cpu"))["cpu"]
        own_cpu = time.process_time()
        result = await run()
        own_cpu = time.process_time() - own_cpu
        child_cpu = (await self.kid.command("cpu"))["cpu"] - child_cpu
        if bus_side:
            await self._profiling(False)
        self.cpu[name] = (own_cpu / count * 1e6, child_cpu / count * 1e6)
        return result

    def print_cpu(self, kinds: tuple[str, ...] = ("ping-pong", "50 concurrent", "one-way")) -> None:
        """Print each kind's CPU per message, raw beside the bus."""
        print("CPU per message (us), this process / the child:")
        for kind in kinds:
            (raw_p, raw_c), (bus_p, bus_c) = self.cpu[f"{kind} raw"], self.cpu[f"{kind} bus"]
            print(f"  {kind:<14} raw {raw_p:6.1f} / {raw_c:6.1f}   addrbus {bus_p:6.1f} / {bus_c:6.1f}")


UVLOOP_ENV = "ADDRBUS_BENCH_UVLOOP"  # set by --uvloop: the benchmark's child processes run on uvloop too


def add_uvloop_option(parser: Any) -> None:
    """Add ``--uvloop`` to a benchmark's command line."""
    parser.add_argument("--uvloop", action="store_true",
                        help="run on uvloop, bus and raw baseline alike (pip install 'addrbus[speed]')")


def run(main: Any, uvloop: bool = False) -> Any:
    """Run the coroutine ``main`` as ``asyncio.run`` does: on uvloop with ``uvloop`` (or in a child of such a run)."""
    if uvloop:
        os.environ[UVLOOP_ENV] = "1"
    if os.environ.get(UVLOOP_ENV) != "1":
        return asyncio.run(main)
    try:
        import uvloop as _uvloop
    except ImportError:
        main.close()
        raise SystemExit("--uvloop needs uvloop: pip install 'addrbus[speed]'") from None
    with asyncio.Runner(loop_factory=_uvloop.new_event_loop) as runner:
        return runner.run(main)


def loop_name() -> str:
    """Say which event loop runs this benchmark: asyncio's or uvloop."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
