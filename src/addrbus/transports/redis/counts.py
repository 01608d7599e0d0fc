"""Receiver counts without pattern subscribers: PUBSUB NUMPAT to know they exist, NUMSUB to see past them.

PUBLISH replies how many clients got the message, pattern subscribers
(``PSUBSCRIBE addrbus:*``, a monitor) included. The bus relies on the figure:
at start it waits for that many hello answers, and an inbox nobody reads means
its node is gone. So while ``PUBSUB NUMPAT`` (asked at every connect and every
heartbeat) says patterns exist, each publish is preceded, in the same write, by
``PUBSUB NUMSUB`` of its channel, which counts channel subscribers only: no
extra round trip, one small command more. Without patterns nothing is added.
A server that refuses ``PUBSUB`` (an ACL, a proxy) gets today's counts, trusted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import wire
from .publish import Publisher, Refused

logger = logging.getLogger("addrbus.transports.redis")

NUMPAT = wire.command(b"PUBSUB", b"NUMPAT")


class Receivers:
    """Know whether pattern subscriptions may inflate PUBLISH counts, and correct the counts while they do."""

    def __init__(self, describe: str) -> None:
        self.describe = describe
        #: True while counts need a NUMSUB check (patterns exist, and the server answers PUBSUB).
        self.checking = False
        self.patterns = 0  # the last PUBSUB NUMPAT
        self.refused = False  # the server would not answer PUBSUB: counts are taken as they come
        self.checks = 0  # NUMSUB probes sent

    def connected(self, patterns: int | None) -> None:
        """Take the NUMPAT asked as a connection opened (None: refused)."""
        self.refused = patterns is None
        self._note(patterns or 0)

    def ask(self, pub: Publisher) -> None:
        """Ask NUMPAT again without waiting for it (every heartbeat)."""
        if not self.refused:
            pub.query(NUMPAT).add_done_callback(self._answered)

    def _answered(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None and isinstance(fut.result(), int):
            self._note(fut.result())

    def _note(self, patterns: int) -> None:
        if patterns and not self.patterns:
            logger.info("%d pattern subscriptions on %s: receiver counts are checked with PUBSUB NUMSUB",
                        patterns, self.describe)
        elif self.patterns and not patterns:
            logger.info("no pattern subscriptions left on %s: receiver counts are taken as they come",
                        self.describe)
        self.patterns = patterns
        self.checking = bool(patterns) and not self.refused

    def probe(self, pub: Publisher, channel: bytes) -> asyncio.Future[Any]:
        """Queue ``PUBSUB NUMSUB channel``, to be followed at once by the publish to ``channel``."""
        self.checks += 1
        return pub.query(wire.command(b"PUBSUB", b"NUMSUB", channel))

    def subscribers(self, probe: asyncio.Future[Any], count: int) -> int:
        """Return how many of the ``count`` receivers PUBLISH replied are channel subscribers."""
        # The probe went out just before the publish, so its reply came first: it is in.
        if not probe.done() or probe.cancelled():
            return count
        exc = probe.exception()
        if exc is None:
            reply = probe.result()
            if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], int):
                return min(count, reply[1])
        elif isinstance(exc, Refused) and not self.refused:
            logger.warning("%s refuses PUBSUB NUMSUB (%s): receiver counts are taken as they come",
                           self.describe, exc)
            self.refused, self.checking = True, False  # until the next connection
        return count
