"""The bus across real OS processes on udp://, inside a private network namespace.

Each test starts helper processes (``tests/procs/service.py``) on a group and
port no other test uses. Processes say what they did on stdout, one line
each; the test never sleeps to synchronise: it waits for those lines, for
routes (``wait_for_handlers``) or for replies, always with a bound.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from addrbus import EventBus, NoHandlers, RecipientGone
from tests._processes import child_env, stop, udp_url
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.procs.service import HEARTBEAT, SAMPLE, Receipt

SERVICE = Path(__file__).parent / "procs" / "service.py"
WAIT = 10.0  # seconds: a generous bound on anything that should take milliseconds


class Proc:
    """A helper process, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process, role: str) -> None:
        self.process = process
        self.role = role
        self.lines: list[str] = []  # everything it printed so far, for failure messages

    async def expect(self, keyword: str, timeout: float = WAIT) -> list[str]:
        """Return the words after ``keyword`` on the next line that starts with it."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            for _ in range(10_000):  # bounded: a helper prints a few lines only
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"{self.role} exited before printing {keyword!r}: {self.lines}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                words = line.split(" ")
                if words[0] == keyword:
                    return words[1:]
        raise AssertionError(f"{self.role} never printed {keyword!r}: {self.lines}")

    async def finish(self) -> int:
        """Stop the process (SIGTERM, then SIGKILL after a bound) and return its exit code."""
        return await stop(self.process)


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Awaitable[Proc]]]:
    """Start helper processes; every one is stopped at teardown."""
    require_private_netns()
    procs: list[Proc] = []

    async def start(role: str, url: str, namespace: str, address: str, *args: str) -> Proc:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVICE), role, url, namespace, address, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=child_env(),
        )
        proc = Proc(process, role)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        await proc.finish()


@asynccontextmanager
async def bus_on(url: str, namespace: str) -> AsyncIterator[EventBus]:
    """Start a bus of the test process on ``url``, with the helpers' short heartbeat."""
    async with EventBus(url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0) as bus:
        yield bus


async def test_request_reply_between_a_service_and_a_client_process(spawn: Any) -> None:
    url, ns, address = udp_url(), unique("ns"), unique("orders")
    service = await spawn("serve", url, ns, address)
    (service_id,) = await service.expect("ready")
    client = await spawn("client", url, ns, address)
    receipt = Receipt.model_validate_json(" ".join(await client.expect("receipt")))
    assert receipt == Receipt(order=SAMPLE.id, total=3, placed=SAMPLE.placed, by=service_id)
    assert receipt.placed.tzinfo is not None and receipt.placed.microsecond == 678901
    assert await asyncio.wait_for(client.process.wait(), WAIT) == 0


async def test_sends_to_three_consumer_processes_are_each_handled_once(spawn: Any) -> None:
    url, ns, address = udp_url(), unique("ns"), unique("work")
    consumers = [await spawn("consume", url, ns, address, str(index)) for index in range(3)]
    for consumer in consumers:
        await consumer.expect("ready")
    total = 3000
    async with bus_on(url, ns) as bus:
        await bus.wait_for_handlers(address, 3, exactly=True, timeout=WAIT)
        for n in range(total):
            await bus.send(address, n)
        # Each report travels the same path as the sends before it, so it is
        # answered after them; ask again (bounded) only if some are still queued.
        reports: list[dict[str, Any]] = []
        for _ in range(20):
            reports = [
                await bus.request(f"{address}.report.{index}", timeout=WAIT) for index in range(len(consumers))
            ]
            if sum(len(r["ids"]) for r in reports) >= total:
                break
        handled = [n for report in reports for n in report["ids"]]
        drops = {key: value for r in reports for key, value in r["stats"].items() if "drop" in key and value}
        assert len(handled) == total, f"handled {len(handled)} of {total}; drops: {drops}; sender: {bus.stats()}"
        assert sorted(handled) == list(range(total)), "a send was handled twice, or never"
        # Round-robin over three equal nodes: a third each, in the order sent.
        for report in reports:
            assert len(report["ids"]) == total // 3
            assert report["ids"] == sorted(report["ids"])


async def test_a_killed_consumer_fails_its_requests_promptly(spawn: Any) -> None:
    url, ns, address = udp_url(), unique("ns"), unique("stuck")
    victim = await spawn("hang", url, ns, address)
    await victim.expect("ready")
    async with bus_on(url, ns) as bus:
        await bus.wait_for_handlers(address, 1, timeout=WAIT)
        timeout = 30.0
        requests = [asyncio.ensure_future(bus.request(address, n, timeout=timeout)) for n in range(10)]
        for n in range(10):
            assert await victim.expect("handling") == [str(n + 1)]
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        victim.process.kill()  # SIGKILL: no goodbye, only missed heartbeats tell
        done, still = await asyncio.wait(requests, timeout=WAIT)
        elapsed = loop.time() - killed_at
        for task in still:
            task.cancel()
        assert not still, f"{len(still)} requests still pending {WAIT} s after the kill"
        errors = [task.exception() for task in done]
        assert all(isinstance(error, RecipientGone) for error in errors), errors
        # Three missed heartbeats of 0.2 s, plus one beat of slack to notice: far under the timeout.
        assert elapsed < 3.0, f"took {elapsed:.2f} s to notice the dead node"
        assert bus.stats()["pending_requests"] == 0
        assert bus.nodes().keys() == {bus.node_id}
        t0 = loop.time()
        with pytest.raises(NoHandlers):
            await bus.request(address, 0, timeout=timeout)
        assert loop.time() - t0 < 0.5


async def test_a_late_joiner_learns_the_routes_during_start(spawn: Any) -> None:
    url, ns, address = udp_url(), unique("ns"), unique("late")
    service = await spawn("serve", url, ns, address)
    (service_id,) = await service.expect("ready")
    # Another process, started after the service, requests right after start().
    late = await spawn("client", url, ns, address, "--no-wait")
    receipt = Receipt.model_validate_json(" ".join(await late.expect("receipt")))
    assert receipt.by == service_id
    assert await asyncio.wait_for(late.process.wait(), WAIT) == 0
    # And this process too, several times over: start() must return routed, every time.
    for _ in range(3):
        async with bus_on(url, ns) as bus:
            reply = await bus.request(address, SAMPLE, response_type=Receipt, timeout=WAIT)
            assert reply.by == service_id and reply.total == 3


# -- redis://: the ring of pings (issue 13) ----------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
async def test_a_consumer_killed_or_paused_on_redis_is_gone_from_every_node_within_3_s(
        spawn: Any, redis_server: Any, how: str) -> None:
    """Six nodes watch each other in a ring: the victim's requests fail and every node forgets it, in 3 s.

    SIGKILL closes its connections (its watcher's next ping reaches nobody);
    SIGSTOP keeps them open (three pings go unanswered). The watchers run with
    the default heartbeat of 1 s for the kill, the helpers' 0.2 s for the pause.
    """
    url, ns, address = str(redis_server.url), unique("ns"), unique("stuck")
    victim = await spawn("hang", url, ns, address)
    (victim_id,) = await victim.expect("ready")
    heartbeat = 1.0 if how == "SIGKILL" else HEARTBEAT
    async with AsyncExitStack() as stack:
        buses = [await stack.enter_async_context(EventBus(url, namespace=ns, heartbeat=heartbeat, stop_timeout=1.0))
                 for _ in range(5)]
        for bus in buses:
            await bus.wait_for_handlers(address, 1, timeout=WAIT)
        requests = [asyncio.ensure_future(buses[0].request(address, n, timeout=30.0)) for n in range(10)]
        for n in range(10):
            assert await victim.expect("handling") == [str(n + 1)]
        loop = asyncio.get_running_loop()
        began = loop.time()
        victim.process.send_signal(getattr(signal, how))
        try:
            done, still = await asyncio.wait(requests, timeout=WAIT)
            failed_in = loop.time() - began
            for task in still:
                task.cancel()
            assert not still, f"{len(still)} requests still pending {WAIT} s after {how}"
            assert all(isinstance(task.exception(), RecipientGone) for task in done)
            for _ in range(1000):  # bounded: 10 ms a turn
                if all(victim_id not in bus.nodes() for bus in buses):
                    break
                await asyncio.sleep(0.01)
            forgotten_in = loop.time() - began
            assert all(victim_id not in bus.nodes() for bus in buses), "a node still lists the victim"
            assert failed_in < 3.0 and forgotten_in < 3.0, (failed_in, forgotten_in)
        finally:
            if how == "SIGSTOP":
                victim.process.send_signal(signal.SIGCONT)  # so that teardown can stop it
