"""Private nats-server processes on free loopback ports (one, or a cluster of three), never the shared one.

``tests/conftest.py`` loads this module as a plugin, which provides the
fixtures ``nats_server`` (one per session), ``fault_nats`` (one per test, free
to kill or pause) and ``nats_cluster`` (three servers routed to each other, per
test). A server is ready once it accepts a client and sends its ``INFO``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_redis import free_port

NATS_SERVER = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")


class NatsServer:
    """Run one private ``nats-server`` on a free loopback port, optionally in a cluster."""

    def __init__(self, *extra_args: str, cluster_port: int | None = None, routes: list[int] | None = None) -> None:
        if NATS_SERVER is None:
            raise RuntimeError("nats-server is not on PATH (apt-get install nats-server)")
        self.port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.extra_args = extra_args
        self._tmp = Path(tempfile.mkdtemp(prefix="addrbus-nats-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert NATS_SERVER is not None
        args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "--no_advertise=true", *self.extra_args]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}", "--cluster_name", "addrbus-test"]
            if self.routes:
                args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        log = open(self._tmp / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise RuntimeError(f"nats-server on port {self.port} did not start: {self.log()[-2000:]}")
            time.sleep(0.01)  # a bounded poll while the server binds its port

    def log(self) -> str:
        try:
            return (self._tmp / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> None:
        """Start the server again on the same ports (after :meth:`kill`)."""
        self.kill()
        self.start(timeout)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self._tmp, ignore_errors=True)


class NatsCluster:
    """Three private servers routed to each other; ``url`` lists them all."""

    def __init__(self) -> None:
        self.servers = self._new_servers()

    @staticmethod
    def _new_servers() -> list[NatsServer]:
        cluster_ports = [free_port() for _ in range(3)]
        return [NatsServer(cluster_port=port, routes=[p for p in cluster_ports if p != port])
                for port in cluster_ports]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    def start(self, attempts: int = 3) -> None:
        """Start all three; if one cannot, stop the others and try again on fresh ports."""
        for attempt in range(attempts):
            try:
                for server in self.servers:
                    server.start()
                return
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1:
                    raise
                self.servers = self._new_servers()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session", name="nats_server")
def nats_server_fixture() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="fault_nats")
def fault_nats_fixture() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="nats_cluster")
def nats_cluster_fixture() -> Iterator[NatsCluster]:
    cluster = NatsCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
