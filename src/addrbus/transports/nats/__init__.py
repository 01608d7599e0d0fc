"""NATS transport (``nats://host:4222``, ``tls://``): the transport in ``transport``, subjects in ``subjects``."""

from __future__ import annotations

from .transport import NatsTransport, from_url

__all__ = ["NatsTransport", "from_url"]
