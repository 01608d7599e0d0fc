"""Redis pub/sub transport (``redis://``, ``rediss://``, ``unix://``); redis-py itself loads only when one is built."""

from __future__ import annotations

from .transport import RedisTransport, from_url

__all__ = ["RedisTransport", "from_url"]
