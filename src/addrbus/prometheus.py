"""Prometheus metrics for addrbus: ``addrbus.prometheus.register(bus)`` (extra ``prometheus``)."""

from __future__ import annotations

__all__: list[str] = []
