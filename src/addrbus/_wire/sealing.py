"""Seal frames in Fernet tokens and open them again: the bus's ``shared_key=``.

A sealed frame is ``MAGIC + token``: two marker bytes, then the Fernet token
exactly as ``Fernet.encrypt`` returns it (url-safe base64 text). ``0xC1`` can
start neither UTF-8 text nor a cleartext frame, so a sealed frame is never
parsed as cleartext and a cleartext frame is never taken for a sealed one.

This is the only module that imports ``cryptography``, and only when a key is
used, so ``import addrbus`` works without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import SecretBytes, SecretStr

from .._exceptions import BusError, ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

logger = logging.getLogger("addrbus._crypto")  # the name users configure; fixed when files move

MAGIC = b"\xc1F"
DEFAULT_MAX_TOKEN_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_REPLAY_ENTRIES = 1_000_000

Key: TypeAlias = str | bytes | SecretStr | SecretBytes
_Decrypter: TypeAlias = Callable[[bytes, int, None], bytes]
Reason: TypeAlias = Literal["too_large", "cleartext", "malformed", "invalid", "expired", "future", "replay"]

_INSTALL_HINT = "shared_key needs the cryptography package: pip install 'addrbus[crypto]'"
# version (1) + timestamp (8) + IV (16) + at least one AES block (16) + HMAC (32)
_MIN_TOKEN = 73
_OVERHEAD = 57
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_DIGEST = 16  # bytes of the HMAC kept per remembered token; unforgeable without the key

_DESCRIPTIONS: dict[str, str] = {
    "too_large": "the sealed frame is larger than the accepted maximum",
    "cleartext": "a cleartext frame reached a bus that requires encryption",
    "malformed": "the data is not a Fernet token",
    "invalid": "the token's signature does not match any key (wrong key or tampered)",
    "expired": "the token is older than the time-to-live",
    "future": "the token is dated too far in the future (check the clocks)",
    "replay": "the token was already opened once",
}


class SealRejected(BusError):
    """A received frame could not be opened; ``reason`` says why in one word."""

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        # Only the reason is stored, so the message can never echo the frame or a key.
        super().__init__(reason)

    def __str__(self) -> str:
        description = _DESCRIPTIONS.get(self.reason, self.reason)
        return f"sealed frame rejected ({self.reason}): {description}"


def _fernet_module() -> Any:
    try:
        from cryptography import fernet
    except ImportError as exc:
        raise ConfigError(_INSTALL_HINT) from exc
    return fernet


def generate_key() -> str:
    """Return a new random Fernet key as url-safe base64 text.

    Raises:
        ConfigError: if the ``cryptography`` package is not installed.
    """
    key: bytes = _fernet_module().Fernet.generate_key()
    return key.decode("ascii")


def _key_list(keys: object) -> list[object]:
    if isinstance(keys, str | bytes | SecretStr | SecretBytes):
        return [keys]
    if isinstance(keys, Sequence):
        if not keys:
            raise ConfigError("shared_key must hold at least one key")
        return list(keys)
    kind = type(keys).__name__
    raise ConfigError(f"shared_key must be a key or a list of keys, not {kind}")


class Sealer:
    """Seal outgoing frames and open incoming ones with one or more Fernet keys.

    The first key seals; every key opens, so keys can be rotated without a stop:
    add the new key second everywhere, then move it first, then drop the old one.

    Each token is opened at most once: a digest of its HMAC is remembered until
    the token expires (``ttl`` after its timestamp). The memory this takes is
    about 180 bytes × message rate × (``ttl`` + ``max_future``) and is capped at
    ``max_replay_entries``; past the cap the oldest entry is forgotten (and a
    warning logged), so a replay of that one token would no longer be caught.
    A wall clock stepped backwards can likewise let an already-forgotten token in.
    Not thread-safe: call it from the event loop's thread only.
    """

    def __init__(
        self,
        keys: Key | Sequence[Key],
        *,
        ttl: float = 60.0,
        max_future: float = 5.0,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        max_replay_entries: int = DEFAULT_MAX_REPLAY_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the sealer.

        Args:
            keys: a key (``str``, ``bytes``, ``SecretStr``) or a non-empty list of them.
            ttl: seconds a token stays valid after it was sealed.
            max_future: seconds a token may be dated ahead of this node's clock.
            max_token_size: the largest sealed frame accepted, in bytes.
            max_replay_entries: the most tokens remembered against replay.
            clock: the wall clock, in seconds since the epoch (for tests).

        Raises:
            ConfigError: for a malformed key or option, or without ``cryptography``.
        """
        if not ttl > 0:
            raise ConfigError(f"ttl must be positive, not {ttl!r}")
        if not max_future >= 0:
            raise ConfigError(f"max_future must be zero or more, not {max_future!r}")
        if max_token_size <= len(MAGIC) + _MIN_TOKEN:
            raise ConfigError(f"max_token_size is too small: {max_token_size!r}")
        if max_replay_entries < 1:
            raise ConfigError(f"max_replay_entries must be positive, not {max_replay_entries!r}")
        fernet = _fernet_module()
        listed = _key_list(keys)
        made = [_make_fernet(fernet.Fernet, key, index) for index, key in enumerate(listed)]
        fernets = [f for f, _ in made]
        raw_keys = [raw for _, raw in made]
        self._fernet: Fernet | MultiFernet = fernets[0] if len(fernets) == 1 else fernet.MultiFernet(fernets)
        self._invalid_token: type[Exception] = fernet.InvalidToken
        self._decrypters = _fast_decrypters(fernets)
        self._key_count = len(fernets)
        # One secret per key for the interest keys (interest_keys): derived, never the key itself.
        self._topic_secrets = [_topic_secret(key) for key in raw_keys]
        self._ttl = ttl
        self._max_future = max_future
        self._max_token_size = max_token_size
        self._max_replay_entries = max_replay_entries
        self._clock = clock
        self._seen: set[bytes] = set()
        # (expiry, digest) in the order tokens were opened. Expiries are nearly sorted;
        # an entry stuck behind a later one is only kept longer, never dropped early.
        self._expiries: deque[tuple[float, bytes]] = deque()
        self._cap_warned = False
        self._counts = dict.fromkeys(("opened", *_DESCRIPTIONS), 0)

    def __repr__(self) -> str:
        return f"<Sealer keys={self._key_count} ttl={self._ttl:g}s>"

    def stats(self) -> dict[str, int]:
        """Return counters: frames opened, rejections by reason, tokens remembered."""
        return {**self._counts, "remembered": len(self._seen)}

    def interest_keys(self, address: str) -> list[str]:
        """Return the interest keys of ``address``, one per key, the sealing key's first.

        A keyed digest (HMAC-SHA256, 16 bytes, url-safe base64): an engine's
        topic names (Redis channels, NATS subjects) then reveal no address to
        anyone without the key. Nodes publish under the first key's digest and
        subscribe under every key's, which is what key rotation needs: a node
        hears every node that seals with any key it holds.
        """
        raw = address.encode("utf-8", "surrogatepass")
        return [base64.urlsafe_b64encode(hmac.new(secret, raw, hashlib.sha256).digest()[:16]).rstrip(b"=").decode()
                for secret in self._topic_secrets]

    def seal(self, frame: bytes) -> bytes:
        """Encrypt and sign ``frame`` with the first key.

        The caller checks the result against the transport's size limit (about
        4/3 of the frame plus 80 bytes).

        Returns:
            ``MAGIC`` followed by the Fernet token.
        """
        return MAGIC + self._fernet.encrypt_at_time(frame, int(self._clock()))

    def open(self, data: bytes) -> bytes:
        """Verify and decrypt a sealed frame, at most once per token.

        Returns:
            The frame that was sealed.

        Raises:
            SealRejected: with ``reason`` ``"too_large"``, ``"cleartext"``,
                ``"malformed"``, ``"invalid"``, ``"expired"``, ``"future"`` or
                ``"replay"``.
        """
        # Size first, before any decoding, so an oversized buffer costs nothing.
        if len(data) > self._max_token_size:
            raise self._reject("too_large")
        if not data.startswith(MAGIC):
            raise self._reject("cleartext")
        # Errors are turned into reasons outside the except blocks, so that no
        # exception context (and its frame locals) travels with SealRejected.
        text = memoryview(data.translate(_FROM_URLSAFE))[len(MAGIC) :]
        try:
            # strict: Fernet would skip stray characters; here they make it malformed.
            raw = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        size = len(raw)
        if size < _MIN_TOKEN or (size - _OVERHEAD) % 16 or raw[0] != 0x80:
            raise self._reject("malformed")
        timestamp = int.from_bytes(raw[1:9], "big")
        frame = self._decrypt(data, raw, timestamp)
        if frame is None:
            raise self._reject("invalid")
        # Timestamps are checked once the signature is good, so the reason is true.
        now = self._clock()
        expiry = timestamp + self._ttl
        if expiry < now:
            raise self._reject("expired")
        if timestamp > now + self._max_future:
            raise self._reject("future")
        # The digest is of the decoded HMAC, so re-encoding a token cannot dodge it.
        digest = raw[-_DIGEST:]
        if digest in self._seen:
            raise self._reject("replay")
        self._remember(digest, expiry, now)
        self._counts["opened"] += 1
        return frame

    def _reject(self, reason: Reason) -> SealRejected:
        self._counts[reason] += 1
        return SealRejected(reason)

    def _decrypt(self, data: bytes, raw: bytes, timestamp: int) -> bytes | None:
        """Return the plaintext of a decoded token, or None if no key verifies it."""
        if self._decrypters is None:
            try:
                # Re-spelled canonically: cryptography 51 refuses the "+/" spelling that older ones
                # (and the fast path) read, and every version must give the same answer.
                return self._fernet.decrypt(base64.urlsafe_b64encode(raw), None)
            except self._invalid_token:
                return None
        for decrypt in self._decrypters:
            frame = _attempt(decrypt, raw, timestamp, self._invalid_token)
            if frame is not None:
                return frame
        return None

    def _remember(self, digest: bytes, expiry: float, now: float) -> None:
        seen, expiries = self._seen, self._expiries
        while expiries and expiries[0][0] < now:
            seen.discard(expiries.popleft()[1])
        if len(seen) >= self._max_replay_entries:
            seen.discard(expiries.popleft()[1])
            if not self._cap_warned:
                self._cap_warned = True
                logger.warning(
                    "replay cache full (%d tokens): forgetting the oldest; raise max_replay_entries",
                    self._max_replay_entries,
                )
        seen.add(digest)
        expiries.append((expiry, digest))


def _attempt(decrypt: _Decrypter, raw: bytes, timestamp: int, invalid: type[Exception]) -> bytes | None:
    try:
        return decrypt(raw, timestamp, None)
    except invalid:
        return None


def _fast_decrypters(fernets: list[Fernet]) -> tuple[_Decrypter, ...] | None:
    """Return each key's decrypt-decoded-bytes method, or None to use the public API.

    ``Fernet.decrypt`` of cryptography before 51 (pure Python) base64-decodes the
    token once more per key tried, which on a 10 kB frame costs twice the
    cryptography itself. ``_decrypt_data`` (what ``MultiFernet.rotate`` calls
    there) takes the bytes already decoded here; it is private, so it is used
    only if it passes a round trip now. cryptography 51 has no such method, and
    its own ``decrypt`` is fast.
    """
    decrypters: list[_Decrypter] = []
    for fernet in fernets:
        decrypt: _Decrypter | None = getattr(fernet, "_decrypt_data", None)
        try:
            token = fernet.encrypt(b"probe")
            raw = base64.urlsafe_b64decode(token)
            ok = decrypt is not None and decrypt(raw, fernet.extract_timestamp(token), None) == b"probe"
        except Exception:  # any change in the private API means: do not use it
            ok = False
        if not ok or decrypt is None:
            logger.debug("no Fernet fast path in this cryptography; using Fernet.decrypt")
            return None
        decrypters.append(decrypt)
    return tuple(decrypters)


def _topic_secret(key: bytes) -> bytes:
    """Derive the secret of a key's interest digests: never the key itself."""
    return hashlib.sha256(b"addrbus interest keys\0" + key).digest()


def _make_fernet(fernet_cls: type[Fernet], key: object, index: int) -> tuple[Fernet, bytes]:
    """Build one Fernet and return it with the key's 32 bytes, with an error that never shows the key."""
    secret = key.get_secret_value() if isinstance(key, SecretStr | SecretBytes) else key
    if not isinstance(secret, str | bytes):
        kind = type(secret).__name__
        raise ConfigError(f"shared_key #{index} must be str, bytes or SecretStr, not {kind}")
    try:
        # The key's canonical form, padded, whatever the installed cryptography also accepts
        # (51 takes a key without its "="): every peer must read the key the same way.
        raw = base64.urlsafe_b64decode(secret)
        if len(raw) == 32:
            return fernet_cls(secret), raw
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        pass  # leave the exception behind: its context could carry the key
    raise ConfigError(
        f"shared_key #{index} is not a valid Fernet key"
        " (32 url-safe base64-encoded bytes); make one with `addrbus keygen` or addrbus.generate_key()"
    )
