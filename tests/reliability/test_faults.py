"""Scenario 7: multicast with 10 % loss, duplication and reordering; every request resolves once."""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest

from addrbus import EventBus
from tests.conftest import unique
from tests.fixtures_netns import require_private_netns
from tests.reliability._measure import Clock, Record, Scale, settle, time_limit
from tests.reliability._requests import fire
from tests.transports.test_udp import udp_url

SEED = 20240607
TIMEOUT = 0.5  # seconds: a lost request or reply costs this much
MARGIN = 0.1  # seconds: how late past its timeout a request may resolve


@time_limit(short=60, full=300)
@pytest.mark.usefixtures("fault_schemes")
async def test_requests_over_a_lossy_duplicating_reordering_network(
    make_bus: Callable[..., EventBus], record: Callable[..., Record], scale: Scale
) -> None:
    require_private_netns()
    count, window = scale.pick((600, 50), (10_000, 100))
    faults = "loss=0.1&dup=0.1&delay=0.1&max_delay=0.02"
    url = "lossy" + udp_url() + f"&seed={SEED}&{faults}"
    namespace, address = unique("ns"), unique("lossy")
    server = make_bus(url, namespace=namespace, heartbeat=0.5)
    client = make_bus(url, namespace=namespace, heartbeat=0.5)
    runs: collections.Counter[int] = collections.Counter()

    @server.on(address, max_queue=10 * window)
    async def double(n: int) -> int:
        runs[n] += 1
        return 2 * n

    await server.start()
    await client.start()
    # Membership frames suffer the same faults; heartbeats make up for lost ones.
    await client.wait_for_handlers(address, 1, timeout=20.0)
    rec = record("7-lossy-multicast", "udp", requests=count, window=window, timeout=TIMEOUT, seed=SEED,
                 faults=faults)

    clock = Clock()
    out = await fire(
        lambda i: client.request(address, i, timeout=TIMEOUT),
        count,
        TIMEOUT,
        lambda i, reply: reply == 2 * i,
        margin=MARGIN + 1.0,
        window=window,
    )
    rec.seconds = round(clock(), 2)
    await settle()
    out.fill(rec)
    rec.duplicates = sum(n - 1 for n in runs.values() if n > 1)
    late_ms = rec.late_beyond_timeout_ms
    server_stats, client_stats = server.stats(), client.stats()
    rec.extra.update(
        handler_runs=sum(runs.values()),
        recipient_gone=out.errors.get("RecipientGone:", 0),
        server_dropped_duplicates=server_stats.get("dropped.duplicate", 0),
        client_dropped_duplicates=client_stats.get("dropped.duplicate", 0),
        late_replies=client_stats.get("dropped.late_reply", 0),
        client_shim={k[len("transport.shim_"):]: v for k, v in client_stats.items() if "shim_" in k},
        server_shim={k[len("transport.shim_"):]: v for k, v in server_stats.items() if "shim_" in k},
    )

    rec.expect("resolutions", out.resolutions, "==", count)
    rec.expect("unresolved", out.unresolved, "==", 0)
    rec.expect("accounted", out.ok + out.timeout + out.no_handlers + out.failed, "==", count)
    rec.expect("mis_correlated", out.mis_correlated, "==", 0)
    rec.expect("handler_runs_twice", rec.duplicates, "==", 0)
    rec.expect("late_beyond_timeout_ms", late_ms, "<=", MARGIN * 1000)
    rec.expect("pending_after", client_stats["pending_requests"], "==", 0)
    # Sanity: the shim did inject faults, and most requests still got through.
    rec.expect("shim_duplicated", rec.extra["client_shim"].get("duplicated", 0), ">", 0)
    rec.expect("ok_fraction", round(out.ok / count, 3), ">=", 0.7)
    rec.assert_ok()
