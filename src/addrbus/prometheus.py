"""Prometheus metrics for addrbus: ``addrbus.prometheus.register(bus)`` (extra ``prometheus``).

Needs ``pip install 'addrbus[prometheus]'`` (prometheus-client). How the
metrics are served (``prometheus_client.start_http_server``, a WSGI or ASGI
app, a push gateway) is the application's choice.

:func:`register` adds a :class:`BusCollector` to a registry. The collector
reads ``bus.stats()``, ``bus.nodes()`` and ``bus.running`` when it is scraped,
so counting costs nothing more than the bus already does; the one thing
measured as it happens is the duration of every request, by an interceptor
whose ``outbound`` hook returns a finisher for requests only (and nothing for
publishes and sends).

Labels: every metric carries ``namespace``; the node id, which changes at every
``start()``, is only on ``addrbus_info`` (a label on every series would start
new series at every restart). Address labels are bounded by
``max_addresses``: the first addresses seen keep their own label, later ones
are counted under ``other``.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ._bus import EventBus
from ._core.intercept import Outcome, Outgoing
from ._exceptions import ConfigError, FailureType
from ._version import __version__

__all__ = ["DEFAULT_BUCKETS", "OTHER", "BusCollector", "register"]

#: The upper bounds of ``addrbus_request_duration_seconds``, in seconds (``+Inf`` is added):
#: from half a millisecond (a request on ``memory://``) to ten seconds (the default timeout's order).
DEFAULT_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                                      5.0, 10.0)
#: The ``address`` label of every address past the first ``max_addresses``.
OTHER = "other"

_MESSAGES = {
    "sent": ("addrbus_sent", "send() calls that found a consumer"),
    "published": ("addrbus_published", "publish() calls that passed their checks"),
    "requests": ("addrbus_requests", "request() calls that found a consumer"),
    "delivered": ("addrbus_delivered", "messages handed to a handler of this node"),
    "replies": ("addrbus_replies", "answers this node's handlers gave to requests"),
    "frames.received": ("addrbus_frames_received", "frames the transport handed to this bus"),
}
#: ``failures.*`` exported at 0 before they are first counted, so that increase() sees the first one.
_FAILURES = ("handler", "invalid_body", "overflow", *(member.value.lower() for member in FailureType))
#: ``transport.*`` keys that are current values, not counters (docs/monitoring.md); any other key is a counter.
_TRANSPORT_GAUGES = frozenset({"pending", "interest_subscriptions", "known_peers", "rcvbuf", "pattern_subscriptions",
                               "shared_subscriptions"})
_NOT_IN_A_NAME = re.compile(r"[^a-zA-Z0-9_]")
_READ_TRIES = 3
_T = TypeVar("_T")

#: The collectors registered in each registry, to name the bus a name collision is about.
_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, list[BusCollector]] = weakref.WeakKeyDictionary()


def register(bus: EventBus, registry: CollectorRegistry | None = None, *, max_addresses: int = 100,
             buckets: Sequence[float] = DEFAULT_BUCKETS) -> BusCollector:
    """Export the metrics of ``bus`` through ``registry`` and start timing its requests.

    One registry holds the metrics of one bus (their names would collide):
    give each bus of a process its own ``CollectorRegistry``.

    Args:
        bus: the bus to export; started or not.
        registry: where the collector goes; ``prometheus_client.REGISTRY`` when None.
        max_addresses: the most distinct ``address`` label values (handlers and
            request durations together); later addresses are labelled ``other``.
        buckets: the upper bounds of the request-duration histogram, in seconds,
            increasing (``+Inf`` is added).

    Returns:
        The collector; its :meth:`~BusCollector.unregister` undoes this.

    Raises:
        ConfigError: for a ``max_addresses`` below 1 or bad ``buckets``, or if
            the registry already has metrics of these names (this bus, another
            bus, or metrics of the application's own).
    """
    collector = BusCollector(bus, max_addresses=max_addresses, buckets=buckets)
    collector.register(REGISTRY if registry is None else registry)
    return collector


class BusCollector(Collector):
    """A Prometheus collector of one bus's counters, gauges and request durations.

    Made and registered by :func:`register`; every metric is built from the bus
    when the registry is collected (scraped), from any thread.

    Args:
        bus: the bus to export.
        max_addresses: the most distinct ``address`` label values; later ones are ``other``.
        buckets: the upper bounds of the request-duration histogram, in seconds.

    Raises:
        ConfigError: for a ``max_addresses`` below 1 or bad ``buckets``.
    """

    def __init__(self, bus: EventBus, *, max_addresses: int = 100, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        if isinstance(max_addresses, bool) or not isinstance(max_addresses, int) or max_addresses < 1:
            raise ConfigError(f"max_addresses must be an int of at least 1, not {max_addresses!r}")
        self._bus = bus
        self._max_addresses = max_addresses
        self._bounds = _check_buckets(buckets)
        self._lock = threading.Lock()  # requests are timed on the bus's loop; scrapes come from any thread
        self._addresses: set[str] = set()  # the address labels kept, first come first kept
        self._durations: dict[str, _Durations] = {}
        self._registry: CollectorRegistry | None = None
        self._remove_timing: Callable[[], None] | None = None

    def __repr__(self) -> str:
        state = "registered" if self._registry is not None else "not registered"
        return f"<BusCollector {self._bus!r} {state}>"

    @property
    def bus(self) -> EventBus:
        """Return the bus this collector exports."""
        return self._bus

    @property
    def registry(self) -> CollectorRegistry | None:
        """Return the registry it is registered with, or None."""
        return self._registry

    def register(self, registry: CollectorRegistry) -> None:
        """Add this collector to ``registry`` and start timing the bus's requests (what :func:`register` does).

        Raises:
            ConfigError: if it is registered already, or ``registry`` already
                has metrics of these names.
        """
        if self._registry is not None:
            raise ConfigError(f"{self!r} is registered already: unregister() it first")
        try:
            registry.register(self)
        except ValueError as exc:  # DuplicateTimeseries: prometheus_client names the series, not the cause
            raise ConfigError(_collision(self._bus, registry, exc)) from exc
        _REGISTERED.setdefault(registry, []).append(self)
        self._registry = registry
        self._remove_timing = self._bus.add_interceptor(_RequestTimer(self._observe))

    def unregister(self) -> None:
        """Remove this collector from its registry and stop timing requests; idempotent."""
        registry, self._registry = self._registry, None
        remove, self._remove_timing = self._remove_timing, None
        if remove is not None:
            remove()
        if registry is not None:
            try:
                registry.unregister(self)
            except KeyError:
                pass  # unregistered from the registry directly
            registered = _REGISTERED.get(registry, [])
            if self in registered:
                registered.remove(self)

    # -- the metrics -------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """Yield every metric family, without samples: what the registry checks names with."""
        yield from self._families(self._bus.stats())

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family with its samples, read from the bus now."""
        bus = self._bus
        stats: dict[str, int] = _read(bus.stats)
        nodes: dict[str, dict[str, int]] = _read(bus.nodes)
        yield from self._families(stats, nodes)

    def _families(self, stats: dict[str, int], nodes: dict[str, dict[str, int]] | None = None) -> Iterator[Metric]:
        """Build the families from ``stats`` and ``nodes``; with ``nodes`` None, only their names and types."""
        bus, fill = self._bus, nodes is not None
        ns = [bus.namespace]
        labels = ["namespace"]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            if fill:
                family.add_metric(ns, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            if fill:
                family.add_metric(ns, value)
            return family

        info = GaugeMetricFamily("addrbus_info", "1, labelled with the bus's node id (new at every start), "
                                 "transport and addrbus version", labels=["namespace", "node", "transport", "version"])
        if fill:
            info.add_metric([bus.namespace, bus.node_id, _scheme(bus.url), __version__], 1)
        yield info
        yield gauge("addrbus_up", "1 while the bus is started, 0 otherwise", 1 if bus.running else 0)
        for key, (name, doc) in _MESSAGES.items():
            yield counter(name, doc, stats.get(key, 0))
        yield gauge("addrbus_pending_requests", "requests of this bus waiting for their reply",
                    stats.get("pending_requests", 0))

        named = {"failures": dict.fromkeys(_FAILURES, 0), "dropped": {}, "crypto": {}, "stalls": {}}
        transport: dict[str, int] = {}
        for key, value in stats.items():
            group, _, rest = key.partition(".")
            if group == "transport":
                transport[rest] = value
            elif group in named and rest:
                named[group][rest] = value
        crypto = named["crypto"]
        opened, remembered = crypto.pop("opened", None), crypto.pop("remembered", None)
        for name, doc, label, values in (
                ("addrbus_failures", "failures seen on this node, by type (failures.*)", "type", named["failures"]),
                ("addrbus_dropped", "frames and messages not handled, by reason (dropped.*)", "reason",
                 named["dropped"]),
                ("addrbus_stalls", "event loop stalls longer than blocking_threshold, by cause (stalls.*)", "cause",
                 named["stalls"]),
                ("addrbus_frames_rejected", "sealed frames that did not open, by reason (crypto.*)", "reason", crypto)):
            family = CounterMetricFamily(name, doc, labels=[*labels, label])
            for value_label, value in sorted(values.items()) if fill else ():
                family.add_metric([bus.namespace, value_label], value)
            yield family
        if opened is not None:
            yield counter("addrbus_frames_opened", "sealed frames opened (crypto.opened)", opened)
        if remembered is not None:
            yield gauge("addrbus_crypto_remembered_tokens", "tokens remembered against replay (crypto.remembered)",
                        remembered)
        for key, value in transport.items():
            metric = f"addrbus_transport_{_NOT_IN_A_NAME.sub('_', key)}"
            doc = f"the transport's {key} (transport.{key})"
            yield gauge(metric, doc, value) if key in _TRANSPORT_GAUGES else counter(metric, doc, value)

        yield gauge("addrbus_known_nodes", "live nodes this bus knows, itself included",
                    len(nodes) if nodes is not None else 0)
        handlers = GaugeMetricFamily("addrbus_handlers", "handlers on this node, by address (or pattern)",
                                     labels=[*labels, "address"])
        if nodes is not None:
            by_label: dict[str, int] = {}
            for address, count in nodes.get(bus.node_id, {}).items():
                label = self._label(address)
                by_label[label] = by_label.get(label, 0) + count
            for label, count in sorted(by_label.items()):
                handlers.add_metric([bus.namespace, label], count)
        yield handlers
        durations = HistogramMetricFamily("addrbus_request_duration_seconds",
                                          "seconds from request() to its reply or failure, by address",
                                          labels=[*labels, "address"])
        if fill:
            with self._lock:
                taken = [(label, d.buckets(self._bounds), d.sum) for label, d in sorted(self._durations.items())]
            for label, buckets, total in taken:
                durations.add_metric([bus.namespace, label], buckets, total)
        yield durations

    # -- the request timing -----------------------------------------------------------------

    def _label(self, address: str) -> str:
        """Return the ``address`` label of ``address``: itself while there is room, else ``other``."""
        with self._lock:
            return self._label_locked(address)

    def _label_locked(self, address: str) -> str:
        kept = self._addresses
        if address in kept:
            return address
        if len(kept) < self._max_addresses:
            kept.add(address)
            return address
        return OTHER

    def _observe(self, address: str, seconds: float) -> None:
        if self._registry is None:
            return  # a request that ended after unregister()
        with self._lock:
            label = self._label_locked(address)
            durations = self._durations.get(label)
            if durations is None:
                durations = self._durations[label] = _Durations(len(self._bounds))
            durations.observe(bisect_left(self._bounds, seconds), seconds)


class _RequestTimer:
    """The interceptor :func:`register` installs: a finisher for each request, nothing for the rest."""

    __slots__ = ("_observe",)

    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe

    def __repr__(self) -> str:
        return "<addrbus.prometheus request timer>"

    def outbound(self, call: Outgoing) -> Callable[[Outcome], None] | None:
        """Time a request to its end; let publishes and sends go untouched."""
        if call.kind != "request":
            return None
        address, observe = call.address, self._observe
        return lambda outcome: observe(address, outcome.duration)


class _Durations:
    """One address's request durations: a count per bucket (the last one is ``+Inf``) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: int) -> None:
        self.counts = [0] * (bounds + 1)
        self.sum = 0.0

    def observe(self, bucket: int, seconds: float) -> None:
        self.counts[bucket] += 1
        self.sum += seconds

    def buckets(self, bounds: Sequence[float]) -> list[tuple[str, float]]:
        """Return the cumulative buckets, ``le`` as Prometheus writes it."""
        result, running = [], 0
        for bound, count in zip([*(repr(b) for b in bounds), "+Inf"], self.counts, strict=True):
            running += count
            result.append((bound, float(running)))
        return result


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    try:
        bounds = [float(b) for b in buckets]
    except (TypeError, ValueError):
        raise ConfigError(f"buckets must be numbers, not {buckets!r}") from None
    if bounds and bounds[-1] == math.inf:
        bounds.pop()  # +Inf is always there
    if not bounds or any(math.isnan(b) or math.isinf(b) for b in bounds) or any(
            a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ConfigError(f"buckets must be finite numbers in increasing order, at least one: {buckets!r}")
    return tuple(bounds)


def _read(read: Callable[[], _T]) -> _T:
    """Call ``read``, again if the bus changed a dict under it (a scrape runs on another thread than the bus)."""
    for _ in range(_READ_TRIES - 1):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return read()


def _scheme(url: str) -> str:
    return url.partition("://")[0] or url


def _collision(bus: EventBus, registry: CollectorRegistry, exc: ValueError) -> str:
    for other in _REGISTERED.get(registry, []):
        if other.bus is bus:
            return f"{bus!r} is registered in this registry already: unregister() its collector first"
        return (f"this registry already holds the metrics of {other.bus!r}: one bus per registry (the metric names "
                f"would collide); give each bus a prometheus_client.CollectorRegistry of its own")
    return f"the registry already has metrics of the names addrbus exports: {exc}"
