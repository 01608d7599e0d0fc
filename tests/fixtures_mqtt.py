"""A private mosquitto per test session (or per fault test), never the shared one on 1883.

``tests/conftest.py`` loads this module as a plugin, which provides the
fixtures ``mosquitto`` (one per session), ``fault_mosquitto`` (one per test,
free to kill or pause), ``secret_mosquitto`` (a password file, no anonymous
clients) and ``tls_mosquitto`` (a TLS listener with a test CA).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._certs import make_certs
from tests.fixtures_redis import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


class Mosquitto:
    """Run one private ``mosquitto -c <conf>`` on a free loopback port (and a TLS one on request)."""

    def __init__(self, *, user: str | None = None, password: str | None = None, tls: bool = False,
                 extra: str = "") -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.user, self.password, self.extra = user, password, extra
        self.dir = Path(tempfile.mkdtemp(prefix="addrbus-mosquitto-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the mqtt:// URL of this broker (with the credentials, if any)."""
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"mqtt://{auth}127.0.0.1:{self.port}"

    @property
    def tls_dir(self) -> Path:
        """Return the directory of the test CA and certificate (``ca.crt``, ``peer.crt``, ``peer.key``)."""
        return self.dir / "tls"

    def tls_url(self, **query: str) -> str:
        """Return an mqtts:// URL of the TLS port, trusting the test CA, plus ``query``."""
        args = {"ca_certs": str(self.tls_dir / "ca.crt"), **query}
        return f"mqtts://127.0.0.1:{self.tls_port}?" + "&".join(f"{k}={v}" for k, v in args.items())

    def _make_certs(self) -> None:
        make_certs(self.tls_dir)

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            # As root, mosquitto would drop to the user "mosquitto", which cannot read this directory.
            *(["user root"] if os.geteuid() == 0 else []),
        ]
        if self.user:
            assert MOSQUITTO_PASSWD is not None and self.password, "mosquitto_passwd and a password are needed"
            passwords = self.dir / "passwords"
            subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwords), self.user, self.password],
                           check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_port is not None:
            if not (self.tls_dir / "peer.crt").exists():
                self._make_certs()
            d = self.tls_dir
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {d / 'ca.crt'}",
                      f"certfile {d / 'peer.crt'}", f"keyfile {d / 'peer.key'}"]
            lines.append("allow_anonymous false" if self.user else "allow_anonymous true")
        if self.extra:
            lines.append(self.extra)
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        conf = self._config()
        with open(self.dir / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll the port until mosquitto listens, for at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = (self.dir / "stderr.log").read_text(errors="replace")
                log = self.dir / "mosquitto.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err[-500:]} {text[-500:]}")
            try:
                for port in ports:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pass
                return
            except OSError:
                # A bounded poll: mosquitto needs a few ms to bind its ports.
                time.sleep(0.01)
        raise RuntimeError(f"mosquitto on port {self.port} not ready after {timeout} s")

    def kill(self) -> None:
        """Kill the broker with SIGKILL and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """Freeze the broker with SIGSTOP: connections stay open, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a broker frozen by :meth:`pause`."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        """Kill the broker and start a fresh one on the same port."""
        self.kill()
        self.start(timeout)

    def stop(self) -> None:
        """Stop the broker for good and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused broker ignores signals until continued
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _running(server: Mosquitto) -> Iterator[Mosquitto]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="mosquitto")
def mosquitto_fixture() -> Iterator[Mosquitto]:
    """Yield one private mosquitto shared by the whole session."""
    yield from _running(Mosquitto())


@pytest.fixture(name="fault_mosquitto")
def fault_mosquitto_fixture() -> Iterator[Mosquitto]:
    """Yield a private mosquitto for one test that may kill, restart or pause it."""
    yield from _running(Mosquitto())


@pytest.fixture(name="secret_mosquitto")
def secret_mosquitto_fixture() -> Iterator[Mosquitto]:
    """Yield a private mosquitto that admits one user with a password, and no anonymous client."""
    yield from _running(Mosquitto(user="bus", password="s3cr3t-Pa55word"))


@pytest.fixture(scope="session", name="tls_mosquitto")
def tls_mosquitto_fixture() -> Iterator[Mosquitto]:
    """Yield a private mosquitto that also listens with TLS (server certificate from a test CA)."""
    yield from _running(Mosquitto(tls=True))
