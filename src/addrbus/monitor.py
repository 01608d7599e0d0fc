"""The monitor of ``addrbus monitor``: a passive node that asks every node for its state and serves it.

``await addrbus.monitor.serve(bus, "127.0.0.1", 8765)`` runs it on a started bus
of your own (the command line builds that bus from its flags).

Every ``interval`` seconds it asks each live node, at the system address
every bus answers (:data:`~addrbus._reporting.STATE_ADDRESS`), for its state,
and keeps the bus's picture: nodes, addresses with their handlers per node,
messages per second per address (counted by the nodes that send them), failures
by type, request latency. It serves that as a web page (``GET /``, one file,
nothing fetched from elsewhere) and as JSON (``GET /state.json``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from importlib import resources
from typing import Any

from ._bus import EventBus
from ._reporting import STATE_ADDRESS

logger = logging.getLogger("addrbus._cli")  # the command line's logger: the monitor is its command

HISTORY = 120  # points of the rate chart (two minutes at one a second)
LATENCY_WINDOW = 10.0  # seconds of request durations the percentiles cover
MAX_LATENCY_SAMPLES = 5000
MAX_REQUEST = 8192  # bytes of an HTTP request's head the server reads
GONE_AFTER = 3  # questions a node may leave unanswered before it shows as unreachable


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Monitor:
    """The bus's picture as the monitor node learns it; :meth:`snapshot` is ``/state.json``."""

    def __init__(self, bus: EventBus, interval: float = 1.0) -> None:
        self._bus = bus
        self.interval = interval
        self._states: dict[str, dict[str, Any]] = {}  # node -> its last state
        self._missed: dict[str, int] = {}  # node -> questions unanswered in a row
        self._rates: dict[str, dict[str, float]] = {}  # node -> address -> messages/s it sent
        self._latency: collections.deque[tuple[float, float]] = collections.deque(maxlen=MAX_LATENCY_SAMPLES)
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.polls = 0

    async def poll(self) -> None:
        """Ask every live node for its state once (each within ``interval``), and update the picture."""
        bus = self._bus
        nodes = list(bus.nodes())
        answers = await asyncio.gather(*(bus.request(STATE_ADDRESS, None, node=node, timeout=self.interval)
                                         for node in nodes), return_exceptions=True)
        seen = time.time()
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException) or not isinstance(answer, dict):
                self._missed[node] = self._missed.get(node, 0) + 1
                continue
            self._missed[node] = 0
            self._take(node, answer, seen)
        for node in set(self._states) - set(nodes):  # gone from the bus
            self._states.pop(node, None)
            self._rates.pop(node, None)
            self._missed.pop(node, None)
        totals: dict[str, float] = {}
        for rates in self._rates.values():
            for address, rate in rates.items():
                totals[address] = totals.get(address, 0.0) + rate
        if self.polls:  # the first answers give counts, not yet rates
            self._history.append({"time": round(seen, 3), "rates": {a: round(r, 3) for a, r in totals.items()}})
        self.polls += 1

    def _take(self, node: str, state: dict[str, Any], seen: float) -> None:
        before = self._states.get(node)
        sent = state.get("sent")
        if not isinstance(sent, dict):
            sent = {}
        rates: dict[str, float] = {}
        if before is not None and before.get("uptime", 0) <= state.get("uptime", 0):
            elapsed = float(state.get("time", seen)) - float(before.get("time", seen))
            if elapsed > 0:
                old = before.get("sent") or {}
                for address, count in sent.items():
                    delta = int(count) - int(old.get(address, 0))
                    rates[address] = max(delta, 0) / elapsed
        self._rates[node] = rates
        for seconds in state.get("latency") or ():
            self._latency.append((seen, float(seconds)))
        self._states[node] = state

    def snapshot(self) -> dict[str, Any]:
        """Return the picture: ``nodes``, ``addresses``, ``failures``, ``latency``, ``history``."""
        now = time.time()
        nodes = []
        handlers: dict[str, dict[str, int]] = {}
        failures: dict[str, int] = {}
        for node, state in self._states.items():
            addresses = state.get("handlers") or {}
            for address, count in addresses.items():
                handlers.setdefault(address, {})[node] = count
            stats = state.get("stats") or {}
            node_failures = {key.split(".", 1)[1]: value for key, value in stats.items()
                             if key.startswith("failures.")}
            for kind, value in node_failures.items():
                failures[kind] = failures.get(kind, 0) + value
            nodes.append({
                "node_id": node,
                "addresses": addresses,
                "uptime": state.get("uptime"),
                "transport": state.get("transport"),
                "transport_state": state.get("transport_state"),
                "version": state.get("version"),
                "python": state.get("python"),
                "monitor": node == self._bus.node_id,
                "reachable": self._missed.get(node, 0) < GONE_AFTER,
                "failures": node_failures,
                "stats": stats,
            })
        rates: dict[str, float] = {}
        for node_rates in self._rates.values():
            for address, rate in node_rates.items():
                rates[address] = rates.get(address, 0.0) + rate
        addresses = [{
            "address": address,
            "handlers": sum(handlers.get(address, {}).values()),
            "nodes": handlers.get(address, {}),
            "rate": round(rates.get(address, 0.0), 3),
        } for address in sorted(set(handlers) | set(rates))]
        recent = [seconds for at, seconds in self._latency if at >= now - LATENCY_WINDOW]
        p50, p99 = _percentile(recent, 0.50), _percentile(recent, 0.99)
        return {
            "time": round(now, 3),
            "monitor": self._bus.node_id,
            "namespace": self._bus.namespace,
            "transport": self._bus.describe(),
            "interval": self.interval,
            "nodes": sorted(nodes, key=lambda n: (n["monitor"], n["node_id"])),
            "addresses": addresses,
            "failures": failures,
            "latency": {"p50": p50, "p99": p99, "samples": len(recent), "window": LATENCY_WINDOW},
            "history": list(self._history),
        }


def page() -> bytes:
    """Return the monitor's web page (``monitor.html``, shipped with the package)."""
    return resources.files(__package__).joinpath("monitor.html").read_bytes()


class Server:
    """A small HTTP/1.1 server of ``/`` and ``/state.json``, one request per connection."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor
        self._page = page()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request, then close the connection."""
        try:
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        method, path = (parts[0], parts[1].split(b"?", 1)[0]) if len(parts) == 3 else (b"", b"")
        if method not in (b"GET", b"HEAD"):
            status, kind, body = "405 Method Not Allowed", "text/plain", b"only GET\n"
        elif path == b"/":
            status, kind, body = "200 OK", "text/html; charset=utf-8", self._page
        elif path == b"/state.json":
            status, kind = "200 OK", "application/json"
            body = json.dumps(self._monitor.snapshot(), default=str).encode()
        else:
            status, kind, body = "404 Not Found", "text/plain", b"not found: try / or /state.json\n"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode())
        if method != b"HEAD":
            writer.write(body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


__all__ = ["Monitor", "serve"]


async def serve(bus: EventBus, host: str = "127.0.0.1", port: int = 8765, interval: float = 1.0,
                ready: Any = None) -> None:
    """Run the monitor on a started ``bus``: poll every ``interval`` seconds and serve HTTP until cancelled.

    ``ready(url)`` is called once the server listens (with the port it got, if ``port`` was 0).
    """
    monitor = Monitor(bus, interval)
    server = await asyncio.start_server(Server(monitor).handle, host, port, limit=MAX_REQUEST)
    bound = server.sockets[0].getsockname()
    url = f"http://{host}:{bound[1]}/"
    if ready is not None:
        ready(url)
    async with server:
        while True:
            began = time.monotonic()
            try:
                await monitor.poll()
            except Exception:
                logger.exception("monitor: could not ask the nodes")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
