"""The tutorial's two processes (docs/tutorial.md, examples/two_services/) on udp:// and redis://.

tests/test_examples.py runs only ``examples/*.py``, programs that exit by
themselves; the tutorial's service serves until it is stopped, so it is run
here: a service process and a client process, as the tutorial starts them,
the URL given once as an argument and once in ``ADDRBUS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests._processes import stop, udp_url
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_services"
WAIT = 20.0  # seconds: a generous bound on what takes well under one
READY = re.compile(r"service: node ([0-9a-f]+) answers pricing\.quote on (\S+)")


class Program:
    """One of the tutorial's processes, its output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []

    async def line(self, timeout: float = WAIT) -> str:
        """Return the next line it prints."""
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"{self.name} exited ({await self.process.wait()}) after: {self.lines}")
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def output(self, timeout: float = WAIT) -> tuple[int, list[str]]:
        """Wait for it to exit by itself; return its exit code and every line it printed."""
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), timeout)
        self.lines += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), timeout), self.lines

    async def finish(self) -> None:
        """Stop it if it still runs: SIGTERM, then SIGKILL after a bound."""
        await stop(self.process)


@pytest.fixture
async def run() -> AsyncIterator[Callable[..., Awaitable[Program]]]:
    """Start examples/two_services programs as a user would; every one is stopped at teardown."""
    programs: list[Program] = []

    async def start(name: str, *args: str, **env: str) -> Program:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ADDRBUS_") or k == "ADDRBUS_NETNS"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE / f"{name}.py"), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**clean, "PYTHONUNBUFFERED": "1", **env},
        )  # fmt: skip
        programs.append(Program(process, name))
        return programs[-1]

    yield start
    for program in programs:
        await program.finish()


def expected_client_output(service_node: str) -> list[str]:
    return [
        "client: 1 handler(s) of pricing.quote on the bus",
        f"client: 3 x apple = 1.50 (node {service_node})",
        f"client: 2 x pear = 1.60 (node {service_node})",
        "client: kiwi refused: no price for 'kiwi' (code 404)",
    ]


async def stop_gracefully(service: Program) -> None:
    """SIGTERM, as systemd or a container runtime stops it: the service says it stopped and exits 0."""
    service.process.terminate()
    code, lines = await service.output()
    assert (code, lines[-1]) == (0, "service: stopped"), lines


async def test_the_service_and_the_client_talk_over_udp(run: Any) -> None:
    require_private_netns()
    url = udp_url()
    service = await run("service", url)  # the URL as an argument
    ready = READY.fullmatch(await service.line())
    assert ready is not None, service.lines
    assert ready.group(2).startswith(url)  # the service says where it serves, options spelt out
    client = await run("client", ADDRBUS_URL=url)  # the same URL in the environment
    code, lines = await client.output()
    assert (code, lines) == (0, expected_client_output(ready.group(1)))
    await stop_gracefully(service)


@pytest.mark.redis
async def test_the_client_started_first_waits_for_the_service_over_redis(run: Any, redis_server: Any) -> None:
    url, namespace = str(redis_server.url), unique("tutorial")
    client = await run("client", url, ADDRBUS_NAMESPACE=namespace)  # before the service: it waits
    service = await run("service", ADDRBUS_URL=url, ADDRBUS_NAMESPACE=namespace)
    ready = READY.fullmatch(await service.line())
    assert ready is not None, service.lines
    code, lines = await client.output()
    assert (code, lines) == (0, expected_client_output(ready.group(1)))
    await stop_gracefully(service)

