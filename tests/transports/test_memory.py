"""The contract on memory://NAME hubs, with and without the wire codec."""

from __future__ import annotations

from addrbus.testing.contract import BusContract
from tests.conftest import unique


class TestMemoryHub(BusContract):
    def url(self) -> str:
        return f"memory://{unique('hub')}"


class TestMemorySerialized(BusContract):
    def url(self) -> str:
        return f"memory://{unique('hub')}?serialize=1"
