"""``addrbus monitor``: every node answers its state at a hidden system address; the monitor serves the picture.

In-process tests drive :class:`~addrbus._cli.monitor.Monitor` over memory://
buses, one poll at a time; the HTTP test runs ``serve(...)`` on a free port;
the browser test runs the real command against service processes over a
private redis-server and loads its page in headless chromium. Nothing sleeps
to synchronise: the tests wait on conditions, each with a bound.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import addrbus._reporting
from addrbus import EventBus, Message, RecipientFailure
from addrbus._patterns import SYSTEM_PREFIX
from addrbus._reporting import STATE_ADDRESS, Reporter
from addrbus.monitor import Monitor, serve
from tests._processes import child_env, stop
from tests.conftest import unique
from tests.test_membership import until as membership_until

WAIT = 10.0  # seconds: a generous bound on anything that should take milliseconds
MONITORED = Path(__file__).parent / "procs" / "monitored.py"


async def until(check: Callable[[], bool], what: str, bound: float = WAIT) -> None:
    """Wait (bounded) until ``check()`` holds (tests/test_membership.py's, with this file's bound)."""
    await membership_until(check, what, bound)


def reporters(bus: EventBus) -> list[Any]:
    """Return the monitor's counting interceptors installed on ``bus``."""
    return [hook for hook in bus._hooks.installed if isinstance(hook, Reporter)]


def node_of(snapshot: dict[str, Any], node_id: str) -> dict[str, Any]:
    (node,) = [n for n in snapshot["nodes"] if n["node_id"] == node_id]
    return node


def address_of(snapshot: dict[str, Any], address: str) -> dict[str, Any]:
    (entry,) = [a for a in snapshot["addresses"] if a["address"] == address]
    return entry


# -- the picture, in-process ------------------------------------------------------------------------


async def test_the_monitor_sees_nodes_handlers_rates_latency_and_failures(make_bus: Any) -> None:
    hub = unique("hub")
    a, b, m = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")

    @a.on("orders.create")
    async def create_a(n: int) -> str:
        return a.node_id

    @b.on("orders.create")
    async def create_b1(n: int) -> str:
        return b.node_id

    @b.on("orders.create")
    async def create_b2(n: int) -> str:
        return b.node_id

    @b.on("orders.fail")
    async def fail(n: int) -> None:
        raise RuntimeError("out of stock")

    async with a, b, m:
        await until(lambda: len(m.nodes()) == 3, "the monitor's bus knows the three nodes")
        monitor = Monitor(m, interval=1.0)
        await monitor.poll()  # the first question: from now on the nodes count what they send
        for n in range(30):
            await a.request("orders.create", n, timeout=WAIT)
        for n in range(3):
            with pytest.raises(RecipientFailure):
                await a.request("orders.fail", n, timeout=WAIT)
        await monitor.poll()
        snap = monitor.snapshot()

    assert monitor.polls == 2
    assert snap["monitor"] == m.node_id
    assert {n["node_id"] for n in snap["nodes"]} == {a.node_id, b.node_id, m.node_id}
    assert [n["node_id"] for n in snap["nodes"] if n["monitor"]] == [m.node_id]
    assert snap["nodes"][-1]["node_id"] == m.node_id, "the monitor's own node is listed last"
    for node in snap["nodes"]:
        assert node["reachable"] is True
        assert node["transport_state"] == "connected"
        assert node["uptime"] >= 0
        assert STATE_ADDRESS not in node["addresses"]
    assert node_of(snap, a.node_id)["addresses"] == {"orders.create": 1}
    assert node_of(snap, b.node_id)["addresses"] == {"orders.create": 2, "orders.fail": 1}
    assert node_of(snap, m.node_id)["addresses"] == {}

    create = address_of(snap, "orders.create")
    assert create["handlers"] == 3
    assert create["nodes"] == {a.node_id: 1, b.node_id: 2}
    assert create["rate"] > 0, create
    assert address_of(snap, "orders.fail")["rate"] > 0
    assert [entry["address"] for entry in snap["addresses"]] == ["orders.create", "orders.fail"]

    latency = snap["latency"]
    assert latency["samples"] == 33, latency  # a's 30 answered and 3 failed requests; no question of the monitor
    assert latency["p50"] is not None and latency["p99"] is not None
    assert 0 < latency["p50"] <= latency["p99"] < WAIT

    # Failures by type, as the nodes' stats name them (failures.<type>): the requester
    # counts the failure type it got, the handling node that its handler raised.
    assert node_of(snap, a.node_id)["failures"] == {"recipient_failure": 3}
    assert node_of(snap, b.node_id)["failures"] == {"handler": 3}
    assert snap["failures"] == {"recipient_failure": 3, "handler": 3}
    assert node_of(snap, a.node_id)["stats"]["failures.recipient_failure"] == 3

    assert len(snap["history"]) == 1, "the first answers give counts, not yet rates: no point for them"
    assert snap["history"][0]["rates"]["orders.create"] == create["rate"]
    json.dumps(snap)  # what /state.json serves


async def test_a_node_that_stops_answering_shows_as_unreachable_and_a_node_gone_disappears(make_bus: Any) -> None:
    hub = unique("hub")
    a, m = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    async with a, m:
        await until(lambda: len(m.nodes()) == 2, "the monitor's bus knows the service")
        monitor = Monitor(m, interval=1.0)
        await monitor.poll()
        assert node_of(monitor.snapshot(), a.node_id)["reachable"] is True
        await a.stop()
        await until(lambda: a.node_id not in m.nodes(), "the stopped node leaves the bus")
        await monitor.poll()
        assert [n["node_id"] for n in monitor.snapshot()["nodes"]] == [m.node_id]


# -- the system address stays hidden ----------------------------------------------------------------


async def test_the_state_address_is_never_listed_nor_matched_by_a_users_pattern(make_bus: Any) -> None:
    hub = unique("hub")
    a, b, m = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    seen: dict[str, list[str]] = collections.defaultdict(list)

    def watch(bus: EventBus, pattern: str) -> None:
        async def handler(msg: Message[Any]) -> str:
            seen[pattern].append(msg.address)
            return "a user's answer"

        bus.on(pattern, handler)

    # Every well-formed pattern (check_registered takes each) that would match the state address by
    # the pattern rules: ">", "_addrbus.>", "_addrbus.sys.>", "*.*.*", "_addrbus.sys.*". None may see a question.
    tokens = STATE_ADDRESS.split(".")
    shape = ".".join("*" * len(tokens))
    patterns = [">", *(".".join([*tokens[:i], ">"]) for i in range(1, len(tokens))), shape,
                ".".join([*tokens[:-1], "*"])]
    for pattern in patterns:
        if pattern.startswith(SYSTEM_PREFIX):  # the bus's own: refused outright
            with pytest.raises(ValueError, match="bus's own"):
                a.on(pattern, lambda body: body)
            continue
        watch(a, pattern)
        watch(b, pattern)
    shown = {pattern: 2 for pattern in patterns if not pattern.startswith(SYSTEM_PREFIX)}
    assert ">" in shown and shape in shown

    def hidden() -> list[str]:
        names = [address for bus in (a, b, m) for address in bus.consumers()]
        names += [address for bus in (a, b, m) for addrs in bus.nodes().values() for address in addrs]
        names += [address for bus in (a, b, m) for address in bus.local_handlers()]
        return [name for name in names if name.startswith(SYSTEM_PREFIX)]

    async with a, b, m:
        await until(lambda: len(m.nodes()) == 3 and m.consumers() == shown,
                    f"the monitor's bus knows the patterns: {m.consumers()}")
        assert hidden() == []
        monitor = Monitor(m, interval=1.0)
        for _ in range(5):
            await monitor.poll()
        assert hidden() == []
        snap = monitor.snapshot()
        for bus in (a, b):
            node = node_of(snap, bus.node_id)
            assert node["reachable"] is True and node["uptime"] is not None, "the node's own reporter answered"
        assert STATE_ADDRESS not in [entry["address"] for entry in snap["addresses"]]
        # Nor does a question asked by a user of the bus reach a pattern.
        state = await a.request(STATE_ADDRESS, None, node=b.node_id, timeout=WAIT)
        assert state["node_id"] == b.node_id and "handlers" in state
        # The watchers do work: a user's message of the state address's shape reaches them.
        user = ".".join(["user"] * len(tokens))
        await m.publish(user, "hello")
        reached = {">": [user] * 2, shape: [user] * 2}  # on a and on b
        await until(lambda: dict(seen) == reached, f"the user's publish reaches the user's patterns: {dict(seen)}")
    assert not [address for addresses in seen.values() for address in addresses if address.startswith(SYSTEM_PREFIX)]


async def test_round_robin_of_a_users_address_is_unaffected_while_the_monitor_polls(make_bus: Any) -> None:
    hub = unique("hub")
    a, b, m = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")
    sent_to: list[str] = []

    for bus in (a, b):
        def register(bus: EventBus = bus) -> None:
            @bus.on("orders.create")
            async def create(n: int) -> str:
                return bus.node_id

            @bus.on("orders.log")
            async def log(n: int) -> None:
                sent_to.append(bus.node_id)

        register()

    async with a, b, m:
        await until(lambda: m.consumers() == {"orders.create": 2, "orders.log": 2}, "the monitor's bus knows both")
        monitor = Monitor(m, interval=1.0)
        done = asyncio.Event()
        during = 0

        async def keep_polling() -> None:
            nonlocal during
            for _ in range(100_000):  # bounded: ends when the requests do
                if done.is_set():
                    return
                await monitor.poll()
                during += 1

        poller = asyncio.create_task(keep_polling())
        try:
            answers = []
            for n in range(100):
                answers.append(await m.request("orders.create", n, timeout=WAIT))
                await m.send("orders.log", n)
            polled = during
        finally:
            done.set()
            await asyncio.wait_for(poller, WAIT)
        await until(lambda: len(sent_to) == 100, "every send is handled")

        assert polled >= 2, "the monitor polled while the requests ran"
        assert collections.Counter(answers) == {a.node_id: 50, b.node_id: 50}
        assert collections.Counter(sent_to) == {a.node_id: 50, b.node_id: 50}
        snap = monitor.snapshot()
        assert address_of(snap, "orders.create")["rate"] > 0
        assert node_of(snap, m.node_id)["stats"].get("failures.no_handlers", 0) == 0


# -- the reporter's interceptor: only while asked ---------------------------------------------------


async def test_the_counting_interceptor_is_installed_when_asked_and_removed_when_idle(
        make_bus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addrbus._reporting, "IDLE", 0.3)
    hub = unique("hub")
    a, m = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")

    @a.on("orders.create")
    async def create(n: int) -> int:
        return n

    mine = a.add_observer(lambda *_: None)  # a user's own, which must stay
    users = list(a._hooks.installed)
    async with a, m:
        await until(lambda: len(m.nodes()) == 2, "the monitor's bus knows the service")
        for n in range(5):
            await a.request("orders.create", n, timeout=WAIT)
        assert reporters(a) == [] and reporters(m) == [], "nobody asked yet: nothing counts"

        state = await m.request(STATE_ADDRESS, None, node=a.node_id, timeout=WAIT)
        assert state["sent"] == {}, "what was sent before the first question is not counted"
        assert len(reporters(a)) == 1 and reporters(m) == []
        for n in range(5):
            await a.request("orders.create", n, timeout=WAIT)
        state = await m.request(STATE_ADDRESS, None, node=a.node_id, timeout=WAIT)
        assert state["sent"] == {"orders.create": 5}
        assert len(state["latency"]) == 5
        assert len(reporters(a)) == 1, "asked again: still one interceptor"

        await until(lambda: reporters(a) == [], "the interceptor is removed once no monitor asks", bound=5.0)
        assert a._hooks.installed == users, "the user's interceptor stays"
        for n in range(5):
            await a.request("orders.create", n, timeout=WAIT)  # not counted: nobody watches
        state = await m.request(STATE_ADDRESS, None, node=a.node_id, timeout=WAIT)
        assert state["sent"] == {} and state["latency"] == []
        assert len(reporters(a)) == 1, "a new question installs it again"
        await until(lambda: reporters(a) == [], "removed again once idle", bound=5.0)
    mine()
    assert a._hooks.installed == []


# -- HTTP -------------------------------------------------------------------------------------------


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """Return (status, content type, body) of one HTTP request (in a thread: urllib blocks)."""
    request = urllib.request.Request(url, method=method, data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


async def raw(url: str, head: bytes) -> bytes:
    """Send ``head`` as it is and return the whole answer."""
    host, port = re.fullmatch(r"http://([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            return await reader.read()
    finally:
        writer.close()


@pytest.fixture
async def served(make_bus: Any) -> AsyncIterator[tuple[str, EventBus]]:
    """Yield the URL of ``serve(...)`` on a free port, and its service bus."""
    hub = unique("hub")
    service, bus = make_bus(f"memory://{hub}"), make_bus(f"memory://{hub}")

    @service.on("orders.create")
    async def create(n: int) -> int:
        return n

    async with service, bus:
        await until(lambda: len(bus.nodes()) == 2, "the monitor's bus knows the service")
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(bus, "127.0.0.1", 0, 0.1, ready.set_result))
        try:
            await asyncio.wait({ready, task}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # serve() failed before it listened: raise its error here
            assert ready.done(), f"serve() did not listen within {WAIT} s"
            yield ready.result(), service
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_the_page_and_the_json_are_served_and_nothing_else(served: tuple[str, EventBus]) -> None:
    url, service = served
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and not url.endswith(":0/")

    status, kind, body = await asyncio.to_thread(fetch, url)
    assert (status, kind) == (200, "text/html; charset=utf-8")
    page = body.decode()
    assert "<title>addrbus monitor</title>" in page and "addrbus monitor" in page
    assert 'fetch("/state.json"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page fetches nothing from elsewhere"

    def answered() -> bool:
        status, kind, body = fetch(url + "state.json")
        assert (status, kind) == (200, "application/json")
        snap = json.loads(body)
        return any(n["node_id"] == service.node_id for n in snap["nodes"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await asyncio.to_thread(answered):
        assert loop.time() < deadline, "/state.json never listed the service's node"
    _, _, body = await asyncio.to_thread(fetch, url + "state.json?x=1")
    snap = json.loads(body)
    assert set(snap) >= {"nodes", "addresses", "failures", "latency", "history"}
    assert address_of(snap, "orders.create")["nodes"] == {service.node_id: 1}

    status, kind, body = await asyncio.to_thread(fetch, url + "nope")
    assert (status, kind) == (404, "text/plain") and b"not found" in body
    status, _, _ = await asyncio.to_thread(fetch, url + "state.json/")
    assert status == 404
    status, kind, body = await asyncio.to_thread(fetch, url, "POST")
    assert (status, kind, body) == (405, "text/plain", b"only GET\n")
    status, _, _ = await asyncio.to_thread(fetch, url + "state.json", "DELETE")
    assert status == 405

    head = await raw(url, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n"), "HEAD: headers, no body"
    assert (await raw(url, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
    assert await raw(url, b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 10_000 + b"\r\n\r\n") == b"", \
        "an oversized head is dropped"


# -- the real command, in a real browser ------------------------------------------------------------


def chromium() -> str:
    """Return chromium's binary: the test fails (it does not skip) without it, as CI installs it."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        pytest.fail("chromium is not installed: the monitor's browser test needs it (apt-get install chromium;"
                    " 'make test' installs it when run as root)")
    return found


async def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium with a fresh profile under ``tmp_path``; fail on a bad exit or a hang."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"chromium exited with {done.returncode}: {done.stderr[-2000:]}"
    return done


class Child:
    """A process of the test, read line by line; stopped (TERM, then KILL after a bound) at teardown."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []

    async def line(self, pattern: str, stream: asyncio.StreamReader | None) -> re.Match[str]:
        """Return the match of ``pattern`` on the first line of ``stream`` that has it."""
        assert stream is not None
        async with asyncio.timeout(WAIT):
            for _ in range(1000):  # bounded: a few lines only
                raw = await stream.readline()
                if not raw:
                    raise AssertionError(f"{self.name} exited before printing {pattern!r}: {self.lines}")
                self.lines.append(raw.decode().rstrip("\n"))
                if found := re.search(pattern, self.lines[-1]):
                    return found
        raise AssertionError(f"{self.name} never printed {pattern!r}: {self.lines}")

    async def finish(self) -> None:
        await stop(self.process)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    children: list[Child] = []

    async def run(name: str, *args: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        child = Child(process, name)
        children.append(child)
        return child

    yield run
    for child in children:
        await child.finish()


@pytest.mark.redis
@pytest.mark.slow
async def test_the_monitor_page_shows_two_service_processes_in_chromium(
        redis_server: Any, start: Callable[..., Any], tmp_path: Path) -> None:
    chromium()  # before anything starts: fail at once without it
    url, ns, address = str(redis_server.url), unique("ns"), "orders.create"
    services = [await start(f"service {i}", str(MONITORED), url, ns, address) for i in range(2)]
    ids = [(await service.line(r"^ready (\S+)$", service.process.stdout)).group(1) for service in services]
    monitor = await start("monitor", "-m", "addrbus", "monitor", "--url", url, "--namespace", ns,
                          "--http", "127.0.0.1:0", "--interval", "0.5")
    found = await monitor.line(r"^monitor of .* at (http://127\.0\.0\.1:\d+/) \(JSON at (\S+)\)$",
                               monitor.process.stderr)
    page, json_url = found.groups()
    assert json_url == page + "state.json"

    def picture() -> dict[str, Any]:
        status, _, body = fetch(json_url)
        assert status == 200
        return json.loads(body)  # type: ignore[no-any-return]

    def ready(snap: dict[str, Any]) -> bool:
        nodes = {n["node_id"]: n for n in snap["nodes"]}
        entries = [a for a in snap["addresses"] if a["address"] == address]
        return (all(i in nodes and nodes[i]["reachable"] for i in ids)
                and bool(entries) and entries[0]["rate"] > 0 and entries[0]["handlers"] == 2)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    snap = await asyncio.to_thread(picture)
    while not ready(snap):
        assert loop.time() < deadline, f"the monitor never saw both services with traffic: {snap}"
        snap = await asyncio.to_thread(picture)
    assert len([n for n in snap["nodes"] if n["monitor"]]) == 1
    assert snap["latency"]["p50"] is not None

    done = await run_chromium(tmp_path, "--virtual-time-budget=4000", "--dump-dom", page)
    dom = done.stdout
    assert "addrbus monitor" in dom
    for node_id in ids:
        assert f'<code title="{node_id}">{node_id[:8]}</code>' in dom, f"node {node_id} not on the page: {dom}"
    row = re.search(rf"<tr><td><code>{re.escape(address)}</code></td>(.*?)</tr>", dom)
    assert row is not None, f"{address} not on the page: {dom}"
    handlers, rate = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    assert handlers == "2"
    assert float(rate) > 0, f"{address} shows no traffic: {row.group(0)}"
    assert '<span id="updated">updated ' in dom, "the page never rendered an answer"
    assert '<span id="stale"></span>' in dom, "the page says the monitor does not answer"

    shot = tmp_path / "monitor.png"
    await run_chromium(tmp_path, "--virtual-time-budget=4000", f"--screenshot={shot}", "--window-size=1280,900",
                       "--hide-scrollbars", page)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000, f"a blank screenshot? {shot.stat().st_size} bytes"


async def test_a_user_cannot_register_at_the_bus_s_own_addresses(make_bus: Any) -> None:
    bus = make_bus()
    with pytest.raises(ValueError, match="bus's own"):
        bus.on(STATE_ADDRESS, lambda body: body)
    with pytest.raises(ValueError, match="bus's own"):
        bus.consumer(STATE_ADDRESS, lambda msg: None)
    async with bus:
        state = await bus.request(STATE_ADDRESS, None, node=bus.node_id, timeout=WAIT)
    assert state["node_id"] == bus.node_id  # its own handler, alone, answers


def test_the_monitor_command_refuses_a_bad_http_address() -> None:
    from addrbus._cli.errors import UsageError
    from addrbus._cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(["monitor", "--url", "udp://239.255.0.1:5000", "--http", "127.0.0.1:0"])
    assert args.http == ("127.0.0.1", 0) and args.interval == 1.0
    for bad in ("8765", "127.0.0.1:port", "127.0.0.1:70000", ":80"):
        with pytest.raises(UsageError, match="HOST:PORT"):
            parser.parse_args(["monitor", "--http", bad])
