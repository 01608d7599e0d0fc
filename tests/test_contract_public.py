"""addrbus.testing.contract runs in a project of its own, as a third-party transport's tests run it."""

from __future__ import annotations

import inspect

import pytest

from addrbus.testing.contract import BusContract

THIRD_PARTY_TESTS = '''
from addrbus.testing.contract import BusContract


class TestMemory(BusContract):
    def url(self):
        return "memory://hub-x"
'''

CASES = sorted(name for name, _ in inspect.getmembers(BusContract, inspect.isfunction) if name.startswith("test"))


def test_the_contract_needs_nothing_but_pytest_and_anyio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No conftest, no ini file and no plugin but anyio's: what `pip install addrbus` and pytest give.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_memory=THIRD_PARTY_TESTS)
    result = pytester.runpytest_subprocess("-p", "anyio.pytest_plugin", "-q")
    assert CASES
    result.assert_outcomes(passed=len(CASES), skipped=0)
