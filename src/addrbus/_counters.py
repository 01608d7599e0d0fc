"""The bus's counters: what ``bus.stats()`` reports."""

from __future__ import annotations


class Counters:
    """Count what the bus does; one object, shared by every part of the bus.

    The per-message counts are slots, incremented in place
    (``counters.delivered += 1``): a dict update costs more on the hot path.
    Everything rarer (failures, drops by reason) is counted by name.
    """

    __slots__ = ("_named", "delivered", "published", "received", "replies", "requests", "sent")

    def __init__(self) -> None:
        self.sent = self.published = self.requests = self.delivered = self.replies = self.received = 0
        self._named: dict[str, int] = {}

    def count(self, key: str) -> None:
        """Add one to the counter ``key`` (``failures.handler``, ``dropped.overflow``...)."""
        named = self._named
        named[key] = named.get(key, 0) + 1

    def get(self, key: str) -> int:
        """Return the counter ``key`` (0 if never counted)."""
        return self._named.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        """Return every counter by name, the per-message ones first."""
        result = {
            "sent": self.sent,
            "published": self.published,
            "requests": self.requests,
            "delivered": self.delivered,
            "replies": self.replies,
            "frames.received": self.received,
        }
        result.update(self._named)
        return result
