"""Start ``_peer.py`` processes and read what they say, line by line, always with a bound."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

PEER = Path(__file__).with_name("_peer.py")


class Peer:
    """A bus node in its own process."""

    def __init__(self, process: asyncio.subprocess.Process, role: str) -> None:
        self.process = process
        self.role = role
        self.lines: list[str] = []

    async def expect(self, keyword: str, timeout: float = 20.0) -> list[str]:
        """Return the words after ``keyword`` on the next line that starts with it."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            for _ in range(10_000):  # a peer prints a few lines only
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"{self.role} exited before printing {keyword!r}: {self.lines[-20:]}")
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                words = line.split(" ")
                if words[0] == keyword:
                    return words[1:]
        raise AssertionError(f"{self.role} never printed {keyword!r}: {self.lines[-20:]}")

    async def finish(self) -> int:
        """Stop the process (end of stdin, then SIGKILL after a bound) and return its exit code."""
        if self.process.returncode is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                return await asyncio.wait_for(self.process.wait(), 5.0)
            except TimeoutError:
                self.process.kill()
        return await self.process.wait()


@asynccontextmanager
async def peers() -> AsyncIterator[list[Peer]]:
    """Yield a list to :func:`start` peers into; every one is stopped on the way out."""
    started: list[Peer] = []
    try:
        yield started
    finally:
        await asyncio.gather(*(p.finish() for p in started), return_exceptions=True)


async def start(into: list[Peer], role: str, url: str, namespace: str, address: str, *args: str,
                shared_key: str | None = None) -> Peer:
    """Start one peer with ``role`` and wait for its ``ready`` line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("ADDRBUS_SHARED_KEY", None)
    if shared_key is not None:
        env["ADDRBUS_SHARED_KEY"] = shared_key
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), role, url, namespace, address, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    peer = Peer(process, role)
    into.append(peer)
    await peer.expect("ready")
    return peer
