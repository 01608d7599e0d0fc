"""The ``addrbus`` command line, run as users run it: a real process against a real bus.

Each bus test starts a bus in this process (UDP multicast inside ``scripts/in-netns``,
or a private redis-server) and runs ``python -m addrbus ...`` beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from addrbus import EventBus, Message
from addrbus._cli import DEFAULT_URL, build_parser, main
from addrbus._patterns import TAP_PREFIX
from tests.fixtures_netns import require_private_netns
from tests.fixtures_redis import RedisServer

DOCS = Path(__file__).parent.parent / "docs" / "cli.md"
WAIT = 10.0  # seconds any one wait may take before the test fails
MakeBus = Callable[..., EventBus]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def cli_env(**extra: str) -> dict[str, str]:
    """Return this process's environment without ADDRBUS_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADDRBUS_") or k == "ADDRBUS_NETNS"}
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "addrbus", *args]


async def spawn(*args: str, env: dict[str, str] | None = None, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command(*args),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env() if env is None else env,
    )


async def finish(proc: asyncio.subprocess.Process, stdin: bytes | None = None, limit: float = 30.0) -> Result:
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    """Run ``addrbus ARGS`` to its end (bounded) and return its exit code and output."""
    return await finish(await spawn(*args, env=env, stdin=stdin is not None), stdin)


def cli_sync(*args: str, env: dict[str, str] | None = None) -> Result:
    done = subprocess.run(command(*args), capture_output=True, text=True, timeout=30,
                          env=cli_env() if env is None else env, stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


def bus_line(url: str, namespace: str = "") -> str:
    """Return the line every command but keygen writes to stderr first: which bus it uses."""
    return f"addrbus: bus {url} namespace {namespace!r}\n"


def assert_one_error_line(result: Result, code: int, *needles: str, logs: bool = False) -> str:
    """Assert the exit code and that stderr is one ``error:`` line (after the bus line and log lines, with ``logs``)."""
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    if lines and lines[0].startswith("addrbus: bus "):
        lines = lines[1:]
    if logs:
        assert all(line.startswith(("WARNING ", "ERROR ")) for line in lines[:-1]), result.err
        lines = lines[-1:]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture
def url() -> Iterator[str]:
    require_private_netns()
    # A random group and port per test: test runs sharing one namespace never cross.
    rand = secrets.SystemRandom()
    yield f"udp://239.255.{rand.randrange(256)}.{rand.randrange(1, 256)}:{rand.randrange(20_000, 60_000)}"


def echo_bus(make_bus: MakeBus, url: str, address: str, **options: Any) -> EventBus:
    bus = make_bus(url, **options)

    @bus.consumer(address)
    async def echo(msg: Message[Any]) -> dict[str, Any]:
        return {"body": msg.body, "headers": msg.headers}

    return bus


# -- keygen, usage and configuration errors (no bus needed) ----------------------------


def test_keygen_prints_a_fernet_key() -> None:
    result = cli_sync("keygen")
    assert result.code == 0, result
    assert result.err == ""
    (key,) = result.lines
    token = Fernet(key).encrypt(b"x")
    assert Fernet(key).decrypt(token) == b"x"
    assert cli_sync("keygen").out != result.out


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    assert len(capsys.readouterr().out.strip()) == 44
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("addrbus ")
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["request"], ["ADDRESS", "--help"]),
        (["frobnicate"], ["frobnicate"]),
        (["request", "a", "hello"], ["BODY must be JSON", '"text"']),
        (["publish", "a", "{"], ["BODY must be JSON"]),
        (["listen", "a", "--reply", "nope"], ["--reply must be JSON"]),
        (["send", "a", "1", "-H", "novalue"], ["bad header", "NAME=VALUE"]),
        (["listen", "a", "--count", "0"], ["--count", "positive"]),
        (["request", "a", "1", "--timeout", "-1"], ["--timeout", "positive"]),
        (["request", " ", "1"], ["empty"]),
        (["request", "--url", "memory://", "a", "1"], ["memory://", "udp://"]),
        (["request", "--url", "bogus://x", "a", "1"], ["ConfigError", "bogus"]),
        (["request", "--namespace", "bad\nname", "a", "1"], ["ConfigError"]),
    ],
)
def test_usage_and_config_errors_are_one_line(
    args: list[str], needles: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ADDRBUS_URL", "ADDRBUS_NAMESPACE", "ADDRBUS_SHARED_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(Result(2, "", captured.err), 2, *needles)


def test_bad_url_fails_in_one_line_with_exit_2() -> None:
    assert_one_error_line(cli_sync("request", "--url", "bogus://host", "a", "1"), 2, "ConfigError", "bogus")
    # from the environment too, and the flag wins over it
    env = cli_env(ADDRBUS_URL="udp://10.0.0.1:5000")
    assert_one_error_line(cli_sync("send", "a", env=env), 2, "ConfigError", "multicast")
    assert_one_error_line(cli_sync("send", "--url", "nope://", "a", env=env), 2, "nope")


def test_bad_key_fails_in_one_line_without_the_key() -> None:
    key = "not-a-key-but-a-secret-4f7d1c"
    result = cli_sync("request", "--key", key, "a", "1")
    assert_one_error_line(result, 2, "ConfigError", "Fernet")
    assert key not in result.err + result.out
    result = cli_sync("request", "a", "1", env=cli_env(ADDRBUS_SHARED_KEY=key))
    assert_one_error_line(result, 2, "ConfigError")
    assert key not in result.err + result.out


def test_url_passwords_are_redacted() -> None:
    for bad in ("redis://:pa55-w0rd-x@127.0.0.1:6399/0?nonsense=1", "udp://user:pa55-w0rd-x@239.255.0.1:5000"):
        result = cli_sync("send", "--url", bad, "a")
        line = assert_one_error_line(result, 2, "ConfigError", "***")
        assert "pa55-w0rd-x" not in line


def test_python_dash_m_and_help() -> None:
    result = cli_sync("--help")
    assert result.code == 0
    for name in ("listen", "request", "send", "publish", "nodes", "keygen"):
        assert name in result.out
    assert DEFAULT_URL in cli_sync("request", "--help").out


def test_every_command_in_the_docs_parses() -> None:
    parser = build_parser()
    commands = []
    for block in DOCS.read_text().split("```sh\n")[1:]:
        for line in block.split("```")[0].splitlines():
            argv = shlex.split(line.removeprefix("$ "))
            if argv and argv[0] == "addrbus":
                commands.append(argv[1 : argv.index("<") if "<" in argv else None])
    assert len(commands) >= 8
    for argv in commands:
        args = parser.parse_args(argv)
        for text in (getattr(args, "body", "-"), getattr(args, "reply", None) or "-"):
            if text != "-":
                json.loads(text)


# -- request ------------------------------------------------------------------------------


@pytest.mark.multicast
async def test_request_prints_the_reply(make_bus: MakeBus, url: str, address: str) -> None:
    async with echo_bus(make_bus, url, address):
        result = await cli("request", "--url", url, address, '{"n": 1, "s": "\u00e9"}', "-H", "trace=abc",
                           "--timeout", "10")
    assert result.code == 0, result
    assert result.err == bus_line(url)
    assert json.loads(result.out) == {"body": {"n": 1, "s": "\u00e9"}, "headers": {"trace": "abc"}}


@pytest.mark.multicast
async def test_request_reads_the_body_from_stdin_and_settings_from_env(
    make_bus: MakeBus, url: str, address: str
) -> None:
    async with echo_bus(make_bus, url, address, namespace="shop"):
        env = cli_env(ADDRBUS_URL=url, ADDRBUS_NAMESPACE="shop")
        result = await cli("request", address, "-", env=env, stdin=b'[1, 2, {"x": null}]\n')
        # a flag wins over its environment variable
        other = await cli("request", "--namespace", "other", address, "--wait", "0.3", env=env)
    assert result.code == 0, result
    assert json.loads(result.out)["body"] == [1, 2, {"x": None}]
    assert_one_error_line(other, 1, "NoHandlers")


@pytest.mark.multicast
async def test_request_without_handlers_fails_with_no_handlers(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url):
        result = await cli("request", "--url", url, address, "1", "--wait", "0.2")
    assert result.out == ""
    assert_one_error_line(result, 1, f"error: NoHandlers: no handlers for address '{address}'")


@pytest.mark.multicast
async def test_request_reports_the_handlers_failure(make_bus: MakeBus, url: str, address: str) -> None:
    bus = make_bus(url)

    @bus.consumer(address)
    async def fails(msg: Message[int]) -> None:
        raise ValueError(f"cannot take {msg.body}")

    async with bus:
        result = await cli("request", "--url", url, address, "7")
    assert_one_error_line(result, 1, "RecipientFailure", "ValueError", "cannot take 7")


@pytest.mark.multicast
async def test_request_times_out(make_bus: MakeBus, url: str, address: str) -> None:
    bus = make_bus(url)
    release = asyncio.Event()

    @bus.consumer(address)
    async def stuck(msg: Message[Any]) -> None:
        await release.wait()

    async with bus:
        try:
            result = await cli("request", "--url", url, address, "--timeout", "0.5")
        finally:
            release.set()
    assert_one_error_line(result, 1, "RequestTimeout")


@pytest.mark.multicast
async def test_shared_key_reaches_a_sealed_bus(make_bus: MakeBus, url: str, address: str) -> None:
    key = Fernet.generate_key().decode()
    async with echo_bus(make_bus, url, address, shared_key=key):
        sealed = await cli("request", address, '"hi"', env=cli_env(ADDRBUS_URL=url, ADDRBUS_SHARED_KEY=key))
        clear = await cli("request", "--url", url, address, '"hi"', "--timeout", "1", "--wait", "0.3")
    assert sealed.code == 0, sealed
    assert json.loads(sealed.out)["body"] == "hi"
    assert key not in sealed.out + sealed.err
    # without the key the sealed bus is invisible (its frames are dropped, and logged)
    assert_one_error_line(clear, 1, "NoHandlers", logs=True)


@pytest.mark.redis
async def test_request_over_redis(make_bus: MakeBus, redis_server: RedisServer, address: str) -> None:
    async with echo_bus(make_bus, redis_server.url, address):
        result = await cli("request", "--url", redis_server.url, address, '{"over": "redis"}')
    assert result.code == 0, result
    assert json.loads(result.out)["body"] == {"over": "redis"}


# -- send and publish -------------------------------------------------------------------


@pytest.mark.multicast
async def test_send_reaches_the_consumer(make_bus: MakeBus, url: str, address: str) -> None:
    bus = make_bus(url)
    received: asyncio.Queue[Message[Any]] = asyncio.Queue()

    @bus.consumer(address)
    async def take(msg: Message[Any]) -> None:
        received.put_nowait(msg)

    async with bus:
        result = await cli("send", "--url", url, address, '{"x": 1}', "-H", "k=v=w")
        assert result.code == 0, result
        assert (result.out, result.err) == ("", bus_line(url))
        msg = await asyncio.wait_for(received.get(), WAIT)
    assert msg.body == {"x": 1}
    assert msg.headers == {"k": "v=w"}
    assert msg.correlation_id is None


@pytest.mark.multicast
async def test_send_without_handlers_fails(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url):
        result = await cli("send", "--url", url, address, "--wait", "0")
    assert_one_error_line(result, 1, "NoHandlers", address)


@pytest.mark.multicast
async def test_publish_reaches_every_consumer(make_bus: MakeBus, url: str, address: str) -> None:
    first, second = make_bus(url), make_bus(url)
    received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    for name, bus in (("first", first), ("second", second)):
        bus.on(address, lambda body, name=name: received.put_nowait((name, body)))
    async with first, second:
        await first.wait_for_handlers(address, 2, timeout=WAIT)
        result = await cli("publish", "--url", url, address, '"news"')
        assert result.code == 0, result
        got = {await asyncio.wait_for(received.get(), WAIT) for _ in range(2)}
    assert got == {("first", "news"), ("second", "news")}


@pytest.mark.multicast
async def test_publish_to_nobody_succeeds(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url):
        result = await cli("publish", "--url", url, address, "--wait", "0")
    assert (result.code, result.out, result.err) == (0, "", bus_line(url))


# -- listen -------------------------------------------------------------------------------


@pytest.mark.multicast
async def test_listen_prints_each_message_as_a_json_line(make_bus: MakeBus, url: str, address: str) -> None:
    other = address + ".other"
    async with make_bus(url) as bus:
        got = bus.stream(other)  # the consumer of the send: listen only watches
        await got.__aenter__()
        proc = await spawn("listen", "--url", url, address, other, "--count", "2", "--timeout", "30")
        try:
            await bus.wait_for_handlers(TAP_PREFIX + address, 1, timeout=WAIT)
            await bus.wait_for_handlers(TAP_PREFIX + other, 1, timeout=WAIT)
            await bus.publish(address, {"n": 1}, headers={"h": "1"})
            await bus.send(other, [2], headers={"h": "2"})
            assert (await got.get(timeout=WAIT)).body == [2]  # the consumer got the send, not listen
            result = await finish(proc)
        finally:
            await got.__aexit__(None, None, None)
            if proc.returncode is None:
                proc.kill()
    assert result.code == 0, result
    first, second = (json.loads(line) for line in result.lines)
    assert set(first) == {"kind", "address", "body", "headers", "id", "correlation_id", "sender", "timestamp"}
    assert (first["kind"], first["address"], first["body"], first["headers"]) == (
        "publish", address, {"n": 1}, {"h": "1"})
    assert (second["kind"], second["address"], second["body"], second["headers"]) == ("send", other, [2], {"h": "2"})
    assert first["sender"] == second["sender"] == bus.node_id
    assert first["correlation_id"] is None
    assert first["id"] != second["id"]
    assert isinstance(first["timestamp"], float)


@pytest.mark.multicast
async def test_listen_stops_after_its_timeout(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url):
        result = await cli("listen", "--url", url, address, "--timeout", "0.3")
    assert (result.code, result.out) == (0, "")


@pytest.mark.multicast
async def test_listen_with_reply_takes_part_and_answers_requests(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url) as bus:
        answering = await spawn("listen", "--url", url, address, "--reply", '{"ok": true}', "--count", "1")
        try:
            await bus.wait_for_handlers(address, 1, timeout=WAIT)  # a consumer, in the round-robin
            assert await bus.request(address, "ping", timeout=WAIT) == {"ok": True}
            answered = await finish(answering)
        finally:
            if answering.returncode is None:
                answering.kill()
    assert answered.code == 0, answered
    (line,) = answered.lines
    assert json.loads(line)["kind"] == "request"
    assert json.loads(line)["correlation_id"] is not None


@pytest.mark.multicast
async def test_listen_never_changes_the_outcome_of_a_request(make_bus: MakeBus, url: str, address: str) -> None:
    async with make_bus(url) as service, make_bus(url) as client:
        @service.on(address)
        async def double(n: int) -> int:
            return n * 2

        watcher = await spawn("listen", "--url", url, address, "--count", "100", "--timeout", "60")
        try:
            await client.wait_for_handlers(address, 1, exactly=True, timeout=WAIT)
            await client.wait_for_handlers(TAP_PREFIX + address, 1, timeout=WAIT)
            assert client.consumers() == {address: 1}  # the watcher is no consumer
            replies = [await client.request(address, n, timeout=WAIT) for n in range(100)]
            watched = await finish(watcher)
        finally:
            if watcher.returncode is None:
                watcher.kill()
    assert replies == [n * 2 for n in range(100)]  # 100 of 100, all from the service
    assert watched.code == 0, watched
    lines = [json.loads(line) for line in watched.lines]
    assert [(line["kind"], line["body"]) for line in lines] == [("request", n) for n in range(100)]


@pytest.mark.multicast
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_listen_stops_cleanly_on_a_signal(
    make_bus: MakeBus, url: str, address: str, sig: signal.Signals, code: int
) -> None:
    async with make_bus(url) as bus:
        proc = await spawn("listen", "--url", url, address)
        try:
            await bus.wait_for_handlers(TAP_PREFIX + address, 1, timeout=WAIT)
            proc.send_signal(sig)
            result = await finish(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
        # it said goodbye: its tap is gone at once, not after missed heartbeats
        await bus.wait_for_handlers(TAP_PREFIX + address, 0, exactly=True, timeout=WAIT)
    assert result.code == code, result
    assert "Traceback" not in result.err


# -- nodes --------------------------------------------------------------------------------


@pytest.mark.multicast
async def test_nodes_lists_the_bus_and_its_addresses(make_bus: MakeBus, url: str, address: str) -> None:
    bus = make_bus(url)
    bus.on(address, lambda body: None)
    bus.on(address, lambda body: None)
    bus.on(address + ".b", lambda body: None)
    async with bus:
        as_json = await cli("nodes", "--url", url, "--json")
        as_table = await cli("nodes", "--url", url, "--wait", "0")
    assert as_json.code == 0, as_json
    assert json.loads(as_json.out) == {bus.node_id: {address: 2, address + ".b": 1}}
    assert as_table.code == 0, as_table
    header, row = as_table.lines
    assert header.split() == ["NODE", "ADDRESSES"]
    assert row.startswith(bus.node_id)
    assert f"{address} (2 handlers)" in row
    assert f"{address}.b" in row


@pytest.mark.multicast
async def test_nodes_on_an_empty_bus(url: str) -> None:
    as_json = await cli("nodes", "--url", url, "--json", "--wait", "0")
    as_table = await cli("nodes", "--url", url, "--wait", "0")
    assert (as_json.code, json.loads(as_json.out)) == (0, {})
    assert (as_table.code, as_table.out) == (0, "")
    assert "no nodes" in as_table.err
