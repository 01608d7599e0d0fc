"""A private redis-server per test session (or per fault test), never the shared one.

``tests/conftest.py`` loads this module as a plugin, which provides the
fixtures ``redis_server`` (one per session), ``fault_redis`` (one per test, free
to kill or pause), ``secret_redis`` (``requirepass``) and ``tls_redis`` (TLS
with client certificates). The ``name=`` lets a module import the functions
without its test arguments shadowing them.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests._certs import make_certs

REDIS_SERVER = shutil.which("redis-server")


# Ports the machine's shared servers use, which a test must never take.
_SHARED_PORTS = frozenset({1883, 4222, 5672, 6222, 6379, 8222, 8883, 15672})
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a loopback TCP port that is free right now and stays ours.

    The port is below the kernel's ephemeral range, so no outgoing client
    connection can take it between this call and the server binding it (a port
    from ``bind(0)`` can be, which once made a nats-server cluster route fail
    with "address already in use"). It is never a shared server's port, nor one
    this process handed out before.
    """
    high = min(_ephemeral_low(), 65536)
    low = max(1024, high - 12000)
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _SHARED_PORTS or port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}..{high - 1}")


class RedisServer:
    """Run one private ``redis-server`` on a free loopback port and a unix socket."""

    def __init__(self, *extra_args: str, password: str | None = None, tls: bool = False) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not on PATH")
        self.port = free_port()
        self.password = password
        self.extra_args = extra_args
        self._tmp = Path(tempfile.mkdtemp(prefix="addrbus-redis-"))
        self.unix_path = str(self._tmp / "redis.sock")
        self.tls_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    @property
    def url(self) -> str:
        """Return the redis:// URL of this server (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """Return the unix:// URL of this server's socket."""
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.unix_path}?db=0"

    @property
    def tls_dir(self) -> Path:
        """Return the directory of the test CA and certificates (``ca.crt``, ``peer.crt``, ``peer.key``)."""
        return self._tmp / "tls"

    def tls_url(self, **query: str) -> str:
        """Return a rediss:// URL of the TLS port, trusting the test CA, plus ``query``."""
        args = {"ssl_ca_certs": str(self.tls_dir / "ca.crt"), **query}
        return f"rediss://127.0.0.1:{self.tls_port}/0?" + "&".join(f"{k}={v}" for k, v in args.items())

    def _make_certs(self) -> None:
        make_certs(self.tls_dir)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            str(REDIS_SERVER),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._tmp),
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self._tmp / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls_port is not None:
            if not (self.tls_dir / "peer.crt").exists():
                self._make_certs()
            d = self.tls_dir
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(d / "peer.crt"),
                "--tls-key-file", str(d / "peer.key"),
                "--tls-ca-cert-file", str(d / "ca.crt"),
                "--tls-auth-clients", "yes",
            ]  # fmt: skip
        args += list(self.extra_args)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll with PING until the server accepts commands, for at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self._tmp / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log[-500:]}")
            try:
                with redis.Redis(
                    host="127.0.0.1",
                    port=self.port,
                    password=self.password,
                    socket_connect_timeout=0.2,
                    socket_timeout=0.2,
                    protocol=2,
                ) as client:
                    if client.ping():
                        return
            except redis.RedisError as exc:
                last = exc
            # A bounded poll: the server needs a few ms to bind its port.
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on port {self.port} not ready after {timeout} s: {last!r}")

    def client(self) -> redis.Redis:
        """Return a raw synchronous redis-py client to this server."""
        if self._client is None:
            self._client = redis.Redis(
                host="127.0.0.1",
                port=self.port,
                password=self.password,
                socket_connect_timeout=2,
                socket_timeout=5,
                protocol=2,
            )
        return self._client

    def cli(self, *args: Any) -> Any:
        """Run one command through a raw redis-py client and return its reply."""
        return self.client().execute_command(*args)  # type: ignore[no-untyped-call]

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None, "server not started"
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """Kill the server with SIGKILL and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._client is not None:
            self._client.close()
            self._client = None

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a server frozen by :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        """Kill the server and start a fresh one on the same port."""
        self.kill()
        if os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
        self.start(timeout)

    def stop(self) -> None:
        """Stop the server for good and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            # A paused server ignores SIGTERM until it is continued.
            self._signal(signal.SIGCONT)
        self.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """Yield one private redis-server shared by the whole session."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="fault_redis")
def fault_redis_fixture() -> Iterator[RedisServer]:
    """Yield a private redis-server for one test that may kill or pause it."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="secret_redis")
def secret_redis_fixture() -> Iterator[RedisServer]:
    """Yield a private redis-server that requires a password."""
    server = RedisServer(password="s3cr3t-Pa55word")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="tls_redis")
def tls_redis_fixture() -> Iterator[RedisServer]:
    """Yield a private redis-server that also speaks TLS (client certificates required)."""
    server = RedisServer(tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
