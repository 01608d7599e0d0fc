"""Which loop the bus runs on: bus.run(main, uvloop=True), the CLI on uvloop where installed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import pytest

from addrbus import ConfigError, EventBus
from addrbus._cli import program
from tests.conftest import unique


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_with_uvloop_runs_main_and_its_requests_on_uvloop() -> None:
    bus = EventBus()
    address = unique("echo")

    @bus.on(address)
    async def echo(n: int) -> int:
        return n

    async def main() -> tuple[str, int]:
        return loop_module(), await bus.request(address, 7)

    module, answer = bus.run(main, uvloop=True)  # type: ignore[misc]
    assert module.startswith("uvloop") and answer == 7
    assert not bus.running
    assert bus.run(main)[0].startswith("asyncio")  # type: ignore[index]


def test_run_with_uvloop_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    bus = EventBus()
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(ConfigError, match=r"addrbus\[speed\]"):
        bus.run(main, uvloop=True)
    assert ran == [] and not bus.running


@pytest.mark.parametrize(("env", "asked"), [(None, None), ("0", False), ("1", None)])
def test_the_cli_runs_on_uvloop_when_installed_unless_told_not_to(
        monkeypatch: pytest.MonkeyPatch, env: str | None, asked: bool | None) -> None:
    seen: list[bool | None] = []

    def fake_run(coro: Coroutine[Any, Any, int], uvloop: bool | None = False) -> int:
        seen.append(uvloop)
        return asyncio.run(coro)

    if env is None:
        monkeypatch.delenv("ADDRBUS_UVLOOP", raising=False)
    else:
        monkeypatch.setenv("ADDRBUS_UVLOOP", env)
    monkeypatch.setattr(program, "run_loop", fake_run)
    assert program.main(["keygen"]) == 0
    assert seen == [asked]


def test_the_cli_really_uses_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADDRBUS_UVLOOP", raising=False)
    seen: list[str] = []
    real = program._guarded

    async def spy(coro: Coroutine[Any, Any, int]) -> int:
        seen.append(loop_module())
        return await real(coro)

    monkeypatch.setattr(program, "_guarded", spy)
    assert program.main(["keygen"]) == 0
    assert seen and seen[0].startswith("uvloop")
