"""Between the bus and its transport: encode, seal, size-check, and the reverse."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from .._exceptions import MessageTooLarge
from .._patterns import GROUP_SEP, is_pattern
from ..transports.registry import redact
from .bodies import encode_body
from .envelope import Envelope
from .frames import FrameError, check_envelope, decode_frame, encode_frame
from .sealing import Sealer, SealRejected

if TYPE_CHECKING:
    from ..transports.base import Transport

# Message ids remembered to drop duplicates (a retried publish, a duplicating
# network, a frame delayed by milliseconds). At 10,000 messages/s this covers
# the last 1.6 s, in about 3 MB (each id costs ~180 bytes: 100,000 took 18 MB).
DEDUP_WINDOW = 16_384
# Addresses whose interest keys (a keyed digest each, with a shared key) are kept computed.
MAX_REMEMBERED_KEYS = 65_536


class Wire:
    """Turn envelopes into frames for one transport, and frames back into envelopes."""

    def __init__(self, transport: Transport, shared_key: Any, replay_ttl: float) -> None:
        self._transport = transport
        self._objects = transport.passes_objects
        self._sealer: Sealer | None = None
        if shared_key is not None:
            self._sealer = Sealer(shared_key, ttl=replay_ttl, max_token_size=transport.max_frame_size)
        # An OrderedDict: popitem(last=False) is O(1), where deleting a dict's first key
        # leaves a hole that every later next(iter(...)) scans again (O(window) per frame).
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._limit = transport.max_frame_size
        self._keys: dict[str, list[str]] = {}  # address -> its interest keys, with a shared key

    def describe(self) -> str:
        """Return the transport's URL with every argument spelt out, and no password."""
        return redact(self._transport.describe())

    @property
    def encrypted(self) -> bool:
        """Tell whether frames are sealed with a shared key."""
        return self._sealer is not None

    @property
    def max_in_flight(self) -> int:
        """Return how many requests may be outstanding to one node (0: no limit), as the transport says."""
        return self._transport.max_in_flight

    def reset(self) -> None:
        """Forget the ids seen so far (a restarted bus)."""
        self._seen.clear()

    def stats(self) -> dict[str, int]:
        """Return counters of the sealer (replays, rejections), if any."""
        return {} if self._sealer is None else dict(self._sealer.stats())

    def _frame(self, env: Envelope, body: Any) -> Any:
        if self._objects:
            env.body = body
            return env
        frame = encode_frame(env, encode_body(body))
        if self._sealer is not None:
            frame = self._sealer.seal(frame)
        if len(frame) > self._limit:
            raise MessageTooLarge(len(frame), self._limit, self._transport.scheme)
        return frame

    async def broadcast(self, env: Envelope, body: Any) -> int | None:
        """Send to every other node; return how many heard it, if known."""
        return await self._transport.broadcast(self._frame(env, body))

    async def unicast(self, node: str, env: Envelope, body: Any, *, timeout: float | None = None) -> bool:
        """Send to one node; return False if the transport knows nobody got it."""
        return await self._transport.unicast(node, self._frame(env, body), timeout=timeout)

    @property
    def routes_sends(self) -> bool:
        """Tell whether the transport's engine chooses the consumer of a send or request."""
        return self._transport.routes_sends

    async def send_any(self, env: Envelope, body: Any, reply: str | None = None,
                       timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Send to one consumer of the envelope's address, chosen by the transport's engine."""
        await self._transport.send_any(self.interest_key(env.addr), self._frame(env, body), reply=reply,
                                       timeout=timeout)

    def interest_key(self, address: str) -> str:
        """Return the key a publish to ``address`` goes out under (the address itself without a shared key)."""
        if self._sealer is None:
            return address
        keys = self._keys.get(address)
        if keys is None:
            keys = self._remember_keys(address)
        return keys[0]

    def interest_keys(self, addresses: Iterable[str]) -> list[str]:
        """Return every key a node consuming ``addresses`` subscribes to (one per shared key each)."""
        if self._sealer is None:
            return list(addresses)
        return [key for address in addresses for key in self._keys.get(address) or self._remember_keys(address)]

    def _remember_keys(self, address: str) -> list[str]:
        assert self._sealer is not None
        if len(self._keys) >= MAX_REMEMBERED_KEYS:
            self._keys.clear()  # addresses come and go; recomputing costs 2 us
        keys = self._keys[address] = self._sealer.interest_keys(address)
        return keys

    async def publish(self, env: Envelope, body: Any) -> int | None:
        """Send a publish to the nodes interested in its address; return how many heard it, if known."""
        return await self._transport.publish(self.interest_key(env.addr), self._frame(env, body))

    async def subscribe(self, addresses: Collection[str]) -> None:
        """Have the transport deliver the publishes for ``addresses`` to this node.

        Patterns are not subscribed: the engine routes exact addresses, and a
        publisher sends a pattern's consumers their own copy (``Outbound.finish_publish``).
        """
        addresses = [a for a in addresses if not (is_pattern(a) or GROUP_SEP in a)]
        if addresses:
            await self._transport.subscribe(self.interest_keys(addresses))

    async def unsubscribe(self, addresses: Collection[str]) -> None:
        """Have the transport stop delivering the publishes for ``addresses``."""
        addresses = [a for a in addresses if not (is_pattern(a) or GROUP_SEP in a)]
        if addresses:
            await self._transport.unsubscribe(self.interest_keys(addresses))

    def body_budget(self, overhead: int) -> int | None:
        """Return the largest body (in bytes) that fits a frame with ``overhead`` bytes of envelope; None: no limit."""
        if self._objects:
            return None
        room = self._limit - overhead
        if self._sealer is not None:
            room = room * 3 // 4 - 128  # base64 and Fernet's version, time, IV, padding and HMAC
        return max(room, 1024)

    def open(self, frame: Any) -> tuple[Envelope, Any, bool]:
        """Return (envelope, body, body_is_json) for a received frame.

        :raises FrameError: for anything that is not a valid frame of this bus.
        """
        if self._objects:
            if type(frame) is not Envelope:
                raise FrameError("not_an_envelope")
            check_envelope(frame)
            return frame, frame.body, False
        if type(frame) is not bytes:
            raise FrameError("not_bytes")
        if len(frame) > self._limit:
            raise FrameError("too_large")  # before any decryption or parsing work
        if self._sealer is not None:
            try:
                frame = self._sealer.open(frame)
            except SealRejected as exc:
                raise FrameError(exc.reason) from None
        env, body = decode_frame(frame)
        check_envelope(env)
        return env, body, True

    def seen_before(self, msg_id: str) -> bool:
        """Tell whether ``msg_id`` was received already (and remember it)."""
        if self._objects:
            return False
        seen = self._seen
        if msg_id in seen:
            return True
        seen[msg_id] = None
        if len(seen) > DEDUP_WINDOW:
            seen.popitem(last=False)
        return False
