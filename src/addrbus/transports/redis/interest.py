"""Interest channels: a node receives the publishes of an address only if it subscribed to its channel.

Each interest key (an address, or its keyed digest on a sealed bus) has the
channel ``<prefix>a:<key>``; a publish goes to that channel alone, so Redis
delivers it to the nodes that consume the address and to no one else. Like
broadcasts, each frame starts with the 8-byte sender id, so a node that both
publishes and consumes an address drops its own frame.

:class:`Interests` keeps the set of channels this node wants across
reconnects (the transport subscribes them all when it opens a new connection,
before it reports ``reconnected``), and matches ``SUBSCRIBE`` confirmations to
the callers waiting for them, in order: Redis confirms every channel of every
``SUBSCRIBE``, even one already subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Collection

from ..._exceptions import TransportError
from . import wire

MAX_HEADS = 4096  # PUBLISH heads kept ready; a bus that publishes to more addresses rebuilds them
BATCH = 1000  # channels per SUBSCRIBE command


class Interests:
    """The interest channels this node subscribes to, and the confirmations it waits for."""

    def __init__(self, prefix: bytes, describe: str) -> None:
        self.prefix = prefix + b"a:"
        self._describe = describe
        self.wanted: set[bytes] = set()
        self._heads: dict[str, bytes] = {}
        self._waiting: dict[bytes, deque[_Batch]] = {}
        self.send: Callable[[list[bytes]], Awaitable[None]] | None = None  # the subscriber connection's, while up

    def channel(self, key: str) -> bytes:
        """Return the channel of interest key ``key``."""
        return self.prefix + key.encode()

    def head(self, key: str) -> bytes:
        """Return ``PUBLISH <channel of key>`` in RESP, from a small cache."""
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= MAX_HEADS:
                self._heads.clear()
            head = self._heads[key] = wire.publish_head(self.channel(key))
        return head

    async def subscribe(self, keys: Collection[str], timeout: float) -> None:  # noqa: ASYNC109
        """Subscribe to ``keys``' channels and wait until Redis confirmed each.

        While disconnected the channels are only remembered: the next
        connection subscribes them before the transport reports ``reconnected``.

        :raises TransportError: if Redis did not confirm within ``timeout``, or
            the connection broke first (the channels stay wanted).
        """
        channels = [c for c in map(self.channel, keys) if c not in self.wanted]
        if not channels:
            return
        self.wanted.update(channels)
        send = self.send
        if send is None:
            return
        batch = _Batch(len(channels))
        for channel in channels:
            self._waiting.setdefault(channel, deque()).append(batch)
        try:
            for i in range(0, len(channels), BATCH):
                await send([wire.command(b"SUBSCRIBE", *channels[i : i + BATCH])])
            async with asyncio.timeout(timeout):
                await batch.done
        except TimeoutError:
            raise TransportError(f"{self._describe} did not confirm {len(channels)} subscription(s)"
                                 f" within {timeout} s") from None
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"could not subscribe at {self._describe}: {type(exc).__name__}") from exc
        finally:
            self._forget(batch, channels)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Unsubscribe from ``keys``' channels, not waiting for Redis to confirm; never raises.

        If the connection broke meanwhile, the next one subscribes only what is wanted.
        """
        channels = [c for c in map(self.channel, keys) if c in self.wanted]
        self.wanted.difference_update(channels)
        send = self.send
        if channels and send is not None:
            with contextlib.suppress(Exception):
                for i in range(0, len(channels), BATCH):
                    await send([wire.command(b"UNSUBSCRIBE", *channels[i : i + BATCH])])

    def confirmed(self, channel: bytes) -> None:
        """Count Redis's confirmation of one subscription to ``channel``."""
        waiting = self._waiting.get(channel)
        if waiting:
            waiting.popleft().confirm()
            if not waiting:
                del self._waiting[channel]

    def connected(self, send: Callable[[list[bytes]], Awaitable[None]], subscribed: Collection[bytes]) -> list[bytes]:
        """A new subscriber connection, subscribed to ``subscribed``: return the commands that bring it to ``wanted``.

        Channels wanted or given up while the connection was being opened are
        the difference; the transport sends these commands before it reports
        the connection.
        """
        self.send = send
        have = set(subscribed)
        more = sorted(self.wanted - have)
        fewer = sorted(c for c in have if c.startswith(self.prefix) and c not in self.wanted)
        return [wire.command(verb, *chunk[i : i + BATCH])
                for verb, chunk in ((b"SUBSCRIBE", more), (b"UNSUBSCRIBE", fewer)) for i in range(0, len(chunk), BATCH)]

    def disconnected(self) -> None:
        """The subscriber connection is gone: fail every wait (the channels stay wanted)."""
        self.send = None
        for waiting in self._waiting.values():
            for batch in waiting:
                batch.fail(TransportError(f"lost the connection to {self._describe} while subscribing"))
        self._waiting.clear()

    def _forget(self, batch: _Batch, channels: list[bytes]) -> None:
        for channel in channels:
            waiting = self._waiting.get(channel)
            if waiting and batch in waiting:
                waiting.remove(batch)
                if not waiting:
                    del self._waiting[channel]


class _Batch:
    """One caller's wait for a number of confirmations."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def confirm(self) -> None:
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
