"""autobus's README programs, as two real processes: ``import addrbus as autobus`` is the change.

``tests/autobus_upstream/readme_subscriber.py`` subscribes and runs;
``readme_publisher.py`` publishes one event and runs. Both call ``autobus.run()``
with no ``url=``, as the README does: on multicast they meet on autobus's default
group (inside the private network namespace), and on Redis ``ADDRBUS_URL`` names the
private redis-server. The test never sleeps to synchronise: it waits (bounded) for
the subscriber's handler to be routed, then for the line its handler prints.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from addrbus import EventBus
from addrbus._compat import AUTOBUS_URL
from tests.fixtures_netns import require_private_netns
from tests.fixtures_redis import RedisServer

PROGRAMS = Path(__file__).parent / "autobus_upstream"
ADDRESS = "autobus.event.MyEventClass"  # where autobus events of that class travel
WAIT = 10.0  # seconds: a generous bound on what takes milliseconds


@pytest.fixture
async def run_program() -> AsyncIterator[Callable[[str, dict[str, str]], Awaitable[asyncio.subprocess.Process]]]:
    """Start README programs; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    procs: list[asyncio.subprocess.Process] = []

    async def run(name: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PROGRAMS / name),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=env,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM ``proc`` (``autobus.run()`` returns) and return its exit code and remaining output."""
    proc.terminate()
    async with asyncio.timeout(WAIT):
        out, _ = await proc.communicate()
    return proc.returncode if proc.returncode is not None else -1, out.decode(errors="replace")


async def read_until(proc: asyncio.subprocess.Process, prefix: str) -> tuple[str, list[str]]:
    """Return the first line of ``proc`` that starts with ``prefix``, and the lines before it."""
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(WAIT):
        while raw := await proc.stdout.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(prefix):
                return line, seen
            seen.append(line)
    raise AssertionError(f"exited with {await proc.wait()} before printing {prefix!r}: {seen}")


@pytest.mark.parametrize(
    "transport",
    [pytest.param("multicast", marks=pytest.mark.multicast), pytest.param("redis", marks=pytest.mark.redis)],
)
async def test_readme_publisher_reaches_readme_subscriber_in_another_process(
    transport: str, request: pytest.FixtureRequest, run_program: Callable[..., Awaitable[asyncio.subprocess.Process]]
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYTHONUNBUFFERED": "1"}
    env.pop("ADDRBUS_URL", None)
    if transport == "multicast":
        require_private_netns()
        url = AUTOBUS_URL  # what autobus.run() with no url= uses
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = env["ADDRBUS_URL"] = server.url

    subscriber = await run_program("readme_subscriber.py", env)
    # The README's publisher publishes once and keeps no history: start it once the
    # subscriber's handler is routed, as this bus on the same URL sees it.
    async with EventBus(url) as observer:
        await observer.wait_for_handlers(ADDRESS, 1, timeout=WAIT)
    publisher = await run_program("readme_publisher.py", env)

    line, before = await read_until(subscriber, "handled ")
    assert line == "handled hello from the publisher"
    for name, proc in (("subscriber", subscriber), ("publisher", publisher)):
        code, rest = await stop(proc)  # run() returns on SIGTERM, as autobus's does
        output = "\n".join(before) + rest if proc is subscriber else rest
        assert code == 0 and "Traceback" not in output, f"the {name} exited with {code}:\n{output}"
