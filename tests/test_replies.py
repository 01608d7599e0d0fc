"""Pending requests: timeouts in order, nothing left behind."""

from __future__ import annotations

import asyncio

import pytest

from addrbus import RecipientGone, RequestTimeout
from addrbus._core.requests import PendingRequests


async def test_timeouts_fire_in_deadline_order_across_timeouts() -> None:
    pending = PendingRequests(asyncio.get_running_loop())
    slow = pending.add("slow", 0.2, "n", None, "a")
    fast = pending.add("fast", 0.05, "n", None, "a")
    done, _ = await asyncio.wait([fast, slow], return_when=asyncio.FIRST_COMPLETED, timeout=5)
    assert done == {fast}
    with pytest.raises(RequestTimeout, match="0.05"):
        fast.result()
    with pytest.raises(RequestTimeout):
        await asyncio.wait_for(slow, 5)
    assert len(pending) == 0


async def test_answered_requests_do_not_pile_up() -> None:
    pending = PendingRequests(asyncio.get_running_loop())
    for i in range(10_000):
        pending.add(str(i), 30.0, "n", None, "a").set_result(None)
        pending.discard(str(i))
    assert len(pending) == 0
    assert sum(len(f) for f in pending._fifos.values()) < 3_000
    pending.close()


async def test_fail_node_fails_only_that_nodes_requests() -> None:
    pending = PendingRequests(asyncio.get_running_loop())
    a = pending.add("1", 30.0, "a", None, "x")
    b = pending.add("2", 30.0, "b", None, "x")
    assert pending.fail_node("a", RecipientGone, "gone") == 1
    with pytest.raises(RecipientGone):
        a.result()
    assert not b.done()
    pending.close()
