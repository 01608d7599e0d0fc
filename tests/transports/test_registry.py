"""URL schemes: the built-in table, and third-party transports found through entry points."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from addrbus import ConfigError, EventBus
from addrbus.transports.registry import available_schemes, make_transport
from addrbus.transports.udp import UdpTransport
from tests.conftest import unique
from tests.transports._entry_points import PIPE_SNIPPET, installed

BUILT_IN = ["memory://", "udp://", "redis://", "rediss://", "unix://", "nats://", "tls://"]
WAIT = 10.0


def module_name() -> str:
    return unique("fake_transport").replace("-", "_")


def test_unknown_scheme_lists_every_accepted_scheme() -> None:
    with pytest.raises(ConfigError, match="unknown bus URL scheme 'amqp'") as info:
        EventBus("amqp://user:hunter2@localhost")
    assert all(scheme in str(info.value) for scheme in BUILT_IN)
    assert "hunter2" not in str(info.value)


def test_available_schemes_are_sorted() -> None:
    assert available_schemes() == sorted(available_schemes())
    assert {"memory", "udp", "redis", "rediss", "unix", "nats", "tls"} <= set(available_schemes())


def test_importing_addrbus_does_not_import_redis() -> None:
    code = ("import sys, addrbus; addrbus.EventBus('memory://');"
            " assert 'redis' not in sys.modules and 'nats' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_installed_transport_is_found_by_scheme(
    tmp_path: Path, make_bus: Callable[..., EventBus], address: str
) -> None:
    name = module_name()
    with installed(tmp_path, {"pipe": name}, {name: PIPE_SNIPPET.read_text()}):
        assert "pipe" in available_schemes()
        assert name not in sys.modules
        with pytest.raises(ConfigError) as info:
            make_transport("amqp://localhost")
        assert all(scheme in str(info.value) for scheme in [*BUILT_IN, "pipe://"])

        url = f"pipe://{unique('pipe')}"
        server, client = make_bus(url), make_bus(url)
        assert name in sys.modules  # loaded from the entry point, once a URL used its scheme

        @server.on(address)
        async def double(x: int) -> int:
            return x * 2

        await server.start()
        await client.start()
        assert await client.request(address, 21, timeout=WAIT) == 42


def test_an_entry_point_may_name_the_factory(tmp_path: Path) -> None:
    name = module_name()
    with installed(tmp_path, {"pipe": f"{name}:from_url"}, {name: PIPE_SNIPPET.read_text()}):
        assert make_transport("pipe://x").describe() == "pipe://x"


def test_broken_entry_point_is_a_config_error_naming_it(tmp_path: Path) -> None:
    name = module_name()
    source = "raise ImportError('libpipe is not installed')\n"
    with installed(tmp_path, {"brokenpipe": name}, {name: source}):
        with pytest.raises(ConfigError, match=f"brokenpipe = {name}.*libpipe is not installed"):
            make_transport("brokenpipe://x")
        # Others still work: an entry point is loaded only when its scheme is used.
        assert make_transport("memory://").scheme == "memory"


def test_entry_point_that_is_no_factory_is_a_config_error(tmp_path: Path) -> None:
    name = module_name()
    with installed(tmp_path, {"pipe": f"{name}:LIMIT", "bare": name}, {name: "LIMIT = 3\n"}):
        with pytest.raises(ConfigError, match=f"pipe = {name}:LIMIT for pipe:// is neither"):
            make_transport("pipe://x")
        with pytest.raises(ConfigError, match="neither a module with from_url"):
            make_transport("bare://x")


def test_a_built_in_scheme_cannot_be_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = module_name()
    with installed(tmp_path, {"udp": name}, {name: PIPE_SNIPPET.read_text()}):
        with caplog.at_level(logging.WARNING, logger="addrbus.transports.registry"):
            assert available_schemes().count("udp") == 1
            assert isinstance(make_transport("udp://239.255.0.1:5000"), UdpTransport)
    assert f"ignoring the transport entry point udp = {name}: udp:// is built in" in caplog.text
    assert name not in sys.modules
