"""The contract on udp:// multicast, inside a private network namespace."""

from __future__ import annotations

import random

import pytest

from addrbus.testing.contract import BusContract
from tests.fixtures_netns import require_private_netns


def udp_url() -> str:
    """Return a host-local multicast URL on a group and port no other test uses."""
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    return f"udp://{group}:{random.randint(20000, 60000)}?interface=127.0.0.1&ttl=0"


class TestUdp(BusContract):
    @pytest.fixture(autouse=True)
    def _netns(self) -> None:
        require_private_netns()

    def url(self) -> str:
        return udp_url()
