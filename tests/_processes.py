"""What the tests that run processes share: a private multicast URL, the child's environment, stopping it."""

from __future__ import annotations

import asyncio
import os
import random
import sys

STOP_GRACE = 5.0  # seconds a child has to end after SIGTERM before it is killed


def udp_url() -> str:
    """Return a host-local multicast URL on a group and port no other test uses."""
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    return f"udp://{group}:{random.randint(20000, 60000)}?interface=127.0.0.1&ttl=0"


def child_env() -> dict[str, str]:
    """Return this process's environment, with its sys.path, for a child that imports addrbus and tests."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


async def stop(process: asyncio.subprocess.Process) -> int:
    """Stop ``process`` if it still runs (SIGTERM, then SIGKILL after STOP_GRACE); return its exit code."""
    if process.returncode is None:
        process.terminate()
        try:
            return await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            process.kill()
    return await process.wait()
