"""The first hour, finding the bus: one default for from_env() and the CLI, misspelt variables named.

``EventBus.from_env()`` and the ``addrbus`` command fall back to the same host-local
``udp://239.255.0.1:5000``; ``EventBus()`` stays in-process. An ``ADDRBUS_*``
variable nothing reads is logged with the setting it probably meant, and every
command (but keygen) says on stderr which bus it uses.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from addrbus import EventBus
from addrbus._cli import DEFAULT_URL
from addrbus._env import ENV_URL
from tests.conftest import unique
from tests.fixtures_redis import RedisServer, free_port

WAIT = 30.0  # seconds a CLI run may take


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``addrbus ARGS`` with no ADDRBUS_* setting of this process's but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADDRBUS_") or k == "ADDRBUS_NETNS"}
    return subprocess.run([sys.executable, "-m", "addrbus", *args], capture_output=True, text=True, timeout=WAIT,
                          env={**clean, **env}, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("ADDRBUS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "addrbus" and r.levelno == logging.WARNING]


# -- one default ----------------------------------------------------------------------------------


def test_from_env_and_the_cli_default_to_one_host_local_bus(no_settings: pytest.MonkeyPatch) -> None:
    bus = EventBus.from_env()
    assert bus.url == ENV_URL == DEFAULT_URL == "udp://239.255.0.1:5000"
    # Host-local: the loopback interface, and not one hop beyond this host.
    assert bus.describe().startswith("udp://239.255.0.1:5000?interface=127.0.0.1&ttl=0&")
    assert EventBus().url == "memory://"  # a bus built in code, with no URL, stays in this process


def test_from_env_reads_its_three_settings(no_settings: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    hub = f"memory://{unique('hub')}"
    no_settings.setenv("ADDRBUS_URL", hub)
    no_settings.setenv("ADDRBUS_NAMESPACE", "shop")
    no_settings.setenv("ADDRBUS_UVLOOP", "0")  # read by the CLI: known, so not reported
    bus = EventBus.from_env()
    assert (bus.url, bus.namespace) == (hub, "shop")
    assert warnings_of(caplog) == []


# -- variables nobody reads -----------------------------------------------------------------------


def test_a_misspelt_url_is_named_with_what_it_may_mean(
        no_settings: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    no_settings.setenv("ADDRBUS_ULR", "redis://elsewhere:6379/0")
    bus = EventBus.from_env()
    assert bus.url == ENV_URL  # the misspelt value is not used: the warning says why
    (warning,) = warnings_of(caplog)
    assert warning.startswith("ignoring unknown environment variable ADDRBUS_ULR (did you mean ADDRBUS_URL?): ")
    assert "redis://elsewhere" not in warning  # names only, never values (they may hold secrets)


def test_every_unknown_variable_is_named_in_one_warning(
        no_settings: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    no_settings.setenv("ADDRBUS_NAMESPCE", "shop")
    no_settings.setenv("addrbus_shared_key", "k")
    no_settings.setenv("ADDRBUS_COLOUR", "blue")
    EventBus.from_env()
    (warning,) = warnings_of(caplog)
    assert warning == (
        "ignoring unknown environment variables ADDRBUS_COLOUR, ADDRBUS_NAMESPCE (did you mean ADDRBUS_NAMESPACE?),"
        " addrbus_shared_key (did you mean ADDRBUS_SHARED_KEY?):"
        " addrbus reads ADDRBUS_URL, ADDRBUS_NAMESPACE, ADDRBUS_SHARED_KEY, ADDRBUS_UVLOOP"
    )


# -- the CLI says which bus -------------------------------------------------------------------


@pytest.mark.redis
def test_the_cli_says_which_bus_once_with_no_password(secret_redis: RedisServer) -> None:
    assert secret_redis.password
    result = run_cli("publish", "--url", secret_redis.url, unique("addr"), "--wait", "0", ADDRBUS_NAMESPACE="shop")
    assert result.returncode == 0, result
    shown = secret_redis.url.replace(secret_redis.password, "***")
    assert result.stderr == f"addrbus: bus {shown} namespace 'shop'\n"
    assert secret_redis.password not in result.stderr + result.stdout


def test_keygen_says_nothing_of_a_bus() -> None:
    result = run_cli("keygen")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.redis
def test_the_cli_warns_of_a_misspelt_variable(redis_server: RedisServer) -> None:
    result = run_cli("publish", "--url", redis_server.url, unique("addr"), "--wait", "0", ADDRBUS_NAMESAPCE="shop")
    assert result.returncode == 0, result
    assert result.stderr.splitlines() == [
        "WARNING addrbus: ignoring unknown environment variable ADDRBUS_NAMESAPCE (did you mean ADDRBUS_NAMESPACE?):"
        " addrbus reads ADDRBUS_URL, ADDRBUS_NAMESPACE, ADDRBUS_SHARED_KEY, ADDRBUS_UVLOOP",
        f"addrbus: bus {redis_server.url} namespace ''",
    ]


def test_a_cli_command_tries_the_bus_once() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    began = time.monotonic()
    result = run_cli("publish", "--url", url, unique("addr"))
    assert time.monotonic() - began < WAIT / 3
    assert result.returncode == 3, result
    bus_line, error = result.stderr.splitlines()
    assert bus_line == f"addrbus: bus {url} namespace ''"
    assert error.startswith(f"error: TransportError: cannot connect to {url}: ")  # no retry, no WARNING
