"""Helpers for tests that must run inside a private network namespace.

Multicast tests send real datagrams. Run inside ``scripts/in-netns`` (which
sets ``ADDRBUS_NETNS=1`` in a namespace holding nothing but ``lo``), nothing
they send can leave the machine; anywhere else they skip, or fail under CI.
"""

from __future__ import annotations

import os
import socket

import pytest

NETNS_ENV = "ADDRBUS_NETNS"


def interfaces() -> list[str]:
    """Return the names of the network interfaces of this process's namespace."""
    # if_nameindex asks the kernel about the current namespace; /sys/class/net
    # would show the namespace that mounted sysfs, usually the host's.
    return sorted(name for _, name in socket.if_nameindex())


def in_private_netns() -> bool:
    """Return True inside ``scripts/in-netns``: the env flag is set and ``lo`` is alone."""
    if os.environ.get(NETNS_ENV) != "1":
        return False
    try:
        return interfaces() == ["lo"]
    except OSError:
        return False


def require_private_netns() -> None:
    """Skip the calling test outside a private network namespace; under CI, fail it.

    CI must run every test, so a missing namespace there is an error, not a skip.
    """
    if in_private_netns():
        return
    reason = f"needs a private network namespace: run under scripts/in-netns ({NETNS_ENV}=1, only lo)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI never skips these tests")
    pytest.skip(reason)


@pytest.fixture
def private_netns() -> None:
    """Fixture form of :func:`require_private_netns`."""
    require_private_netns()
