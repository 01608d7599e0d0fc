"""Tests for sealing frames in Fernet tokens (``shared_key=``)."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretBytes, SecretStr

from addrbus._exceptions import BusError, ConfigError
from addrbus._wire.sealing import (
    MAGIC,
    Sealer,
    SealRejected,
    _fast_decrypters,
    generate_key,
)

T0 = 1_700_000_000.0
SECRET = b"frame-contents-that-must-never-leak"


class Clock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["fast", "public"])
def make(request: pytest.FixtureRequest) -> Callable[..., Sealer]:
    """Build sealers on a fake clock, through Fernet's private or public decryption."""

    def factory(keys: Any, **kwargs: Any) -> Sealer:
        kwargs.setdefault("clock", Clock())
        sealer = Sealer(keys, **kwargs)
        # the fast path passed its self-test, where this cryptography has one
        assert (sealer._decrypters is not None) is hasattr(Fernet(generate_key()), "_decrypt_data")
        if request.param == "public":
            sealer._decrypters = None
        return sealer

    return factory


def reason(sealer: Sealer, data: bytes) -> str:
    with pytest.raises(SealRejected) as info:
        sealer.open(data)
    return info.value.reason


def at(key: str, when: float, frame: bytes = SECRET) -> bytes:
    """Seal ``frame`` as if at ``when``."""
    return MAGIC + Fernet(key).encrypt_at_time(frame, int(when))


def test_round_trip(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    sender, receiver = make(key), make(key)
    for frame in (b"", b"x", SECRET, os.urandom(1000), os.urandom(1 << 20)):
        sealed = sender.seal(frame)
        assert sealed.startswith(MAGIC)
        assert SECRET not in sealed
        assert receiver.open(sealed) == frame
    assert receiver.stats()["opened"] == 5
    assert receiver.stats()["remembered"] == 5


def test_sealed_frame_is_never_text_and_token_is_standard() -> None:
    key = generate_key()
    sealed = Sealer(key).seal(SECRET)
    with pytest.raises(UnicodeDecodeError):
        sealed.decode("utf-8")
    assert not sealed.startswith(b"AB")  # the cleartext codec's magic
    assert Fernet(key).decrypt(sealed[len(MAGIC) :]) == SECRET


def test_generate_key() -> None:
    key = generate_key()
    assert isinstance(key, str)
    assert len(key) == 44
    assert generate_key() != key
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"


def test_rotation(make: Callable[..., Sealer]) -> None:
    k1, k2 = generate_key(), generate_key()
    a, b = make([k1]), make([k2, k1])
    assert b.open(a.seal(b"old")) == b"old"
    # A learns k2 and seals with it; C, which knows only k2, reads it.
    a2, c = make([k2, k1]), make([k2])
    assert c.open(a2.seal(b"new")) == b"new"
    assert b.open(a2.seal(b"new")) == b"new"
    assert reason(c, a.seal(b"old")) == "invalid"  # k1 has been dropped by C


def test_key_forms(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    forms: list[Any] = [
        key,
        key.encode(),
        SecretStr(key),
        SecretBytes(key.encode()),
        [key],
        (SecretStr(key),),
        [generate_key(), key.encode()],
    ]
    sealed = make(key).seal(b"hello")
    for form in forms:
        assert make(form).open(sealed) == b"hello"


def test_wrong_key(make: Callable[..., Sealer]) -> None:
    sealed = make(generate_key()).seal(SECRET)
    assert reason(make(generate_key()), sealed) == "invalid"
    assert reason(make([generate_key(), generate_key()]), sealed) == "invalid"


def test_tampered_text_never_opens(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    sealed = make(key).seal(b"tiny")
    receiver = make(key)
    assert receiver.open(sealed) == b"tiny"
    raw = base64.urlsafe_b64decode(sealed[len(MAGIC) :])
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(sealed) < 120
    for i in range(len(sealed)):
        for replacement in (alphabet[(alphabet.find(sealed[i]) + 1) % 64], ord("!")):
            tampered = sealed[:i] + bytes([replacement]) + sealed[i + 1 :]
            got = reason(receiver, tampered)
            if got == "replay":  # the same token spelled differently (unused bits)
                assert base64.urlsafe_b64decode(tampered[len(MAGIC) :]) == raw
            else:
                assert got in {"cleartext", "malformed", "invalid"}, (i, got)


def test_tampered_byte_is_invalid(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    raw = base64.urlsafe_b64decode(make(key).seal(b"tiny")[len(MAGIC) :])
    receiver = make(key)
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        tampered = MAGIC + base64.urlsafe_b64encode(bytes(flipped))
        # byte 0 is the version; every other byte is covered by the HMAC, the
        # timestamp included, so a retimed token is "invalid", not "expired".
        assert reason(receiver, tampered) == ("malformed" if i == 0 else "invalid")


def test_truncated_and_extended(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    sealed = make(key).seal(b"a frame of some length" * 3)
    receiver = make(key)
    for n in range(len(sealed)):
        got = reason(receiver, sealed[:n])
        assert got == "cleartext" if n < len(MAGIC) else got in {"malformed", "invalid"}
    for tail in (b"=", b"A", b"AAAA", b"\n", bytes(16)):
        assert reason(receiver, sealed + tail) in {"malformed", "invalid"}
    assert receiver.open(sealed) == b"a frame of some length" * 3


def test_cleartext_rejected(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    receiver = make(key)
    token = Fernet(key).encrypt(b"x")
    for data in (b"", b"\xc1", b'AB{"v":1}\nnull', token, b"F" + token, MAGIC[::-1]):
        assert reason(receiver, data) == "cleartext"
    for data in (MAGIC, MAGIC + b"not base64!", MAGIC + base64.urlsafe_b64encode(b"x")):
        assert reason(receiver, data) == "malformed"
    assert receiver.stats()["cleartext"] == 6
    assert receiver.stats()["malformed"] == 3


def test_expired(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    clock = Clock()
    receiver = make(key, ttl=10, clock=clock)
    assert reason(receiver, at(key, T0 - 11)) == "expired"
    assert receiver.open(at(key, T0 - 10)) == SECRET  # exactly ttl old: still valid
    sealed = make(key, clock=clock).seal(b"late")
    clock.now += 10.5
    assert reason(receiver, sealed) == "expired"


def test_future(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    receiver = make(key, max_future=5)
    assert reason(receiver, at(key, T0 + 6)) == "future"
    assert reason(receiver, at(key, T0 + 3600)) == "future"
    assert receiver.open(at(key, T0 + 5)) == SECRET


def test_replay_rejected_for_the_whole_ttl(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    clock = Clock()
    sender, receiver = make(key, clock=clock), make(key, ttl=30, clock=clock)
    sealed = sender.seal(SECRET)
    assert receiver.open(sealed) == SECRET
    assert make(key, clock=clock).open(sealed) == SECRET  # another node: its own once
    for step in range(30):
        clock.now = T0 + step
        receiver.open(sender.seal(b"other traffic"))
        assert reason(receiver, sealed) == "replay"
    clock.now = T0 + 30  # the last second the token itself is valid
    assert reason(receiver, sealed) == "replay"
    clock.now = T0 + 31
    assert reason(receiver, sealed) == "expired"
    assert receiver.stats()["replay"] == 31


def test_replay_of_a_respelled_token(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    receiver = make(key)
    sealed = make(key).seal(b"x")  # 73 bytes: ends "==" after 4 unused bits
    assert sealed.endswith(b"==")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare_bit = alphabet[alphabet.index(sealed[-3]) ^ 0x01]
    respelled = sealed[:-3] + bytes([spare_bit]) + b"=="
    assert base64.urlsafe_b64decode(respelled[2:]) == base64.urlsafe_b64decode(sealed[2:])
    assert receiver.open(respelled) == b"x"
    assert reason(receiver, sealed) == "replay"
    std = sealed.replace(b"-", b"+").replace(b"_", b"/")
    assert reason(receiver, std) == "replay"


def test_replay_cache_purges_expired_entries(make: Callable[..., Sealer], caplog: pytest.LogCaptureFixture) -> None:
    key = generate_key()
    clock = Clock()
    sender = make(key, clock=clock)
    receiver = make(key, ttl=10, max_replay_entries=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="addrbus._crypto"):
        for _round in range(5):
            for _ in range(3):
                receiver.open(sender.seal(b"x"))
            assert receiver.stats()["remembered"] <= 3
            clock.now += 11
    assert not caplog.records  # expired entries were purged, none was evicted


def test_replay_cache_cap_evicts_oldest(make: Callable[..., Sealer], caplog: pytest.LogCaptureFixture) -> None:
    key = generate_key()
    sender = make(key)
    receiver = make(key, max_replay_entries=3)
    tokens = [sender.seal(b"%d" % i) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="addrbus._crypto"):
        for token in tokens[:4]:
            receiver.open(token)
        receiver.open(tokens[4])
    assert receiver.stats()["remembered"] == 3
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # once, not per token
    assert "max_replay_entries" in caplog.text
    for token in tokens[2:]:
        assert reason(receiver, token) == "replay"
    # Documented: past the cap the oldest token is forgotten and could be replayed.
    assert receiver.open(tokens[0]) == b"0"


def test_too_large_checked_before_decoding(make: Callable[..., Sealer]) -> None:
    key = generate_key()
    receiver = make(key, max_token_size=1024)

    class Untouchable(bytes):
        def startswith(self, *args: Any) -> bool:
            raise AssertionError("inspected")

        def translate(self, *args: Any) -> bytes:
            raise AssertionError("decoded")

    assert reason(receiver, Untouchable(MAGIC + bytes(2000))) == "too_large"
    huge = MAGIC + os.urandom(32 << 20)  # over the 16 MiB default
    assert reason(make(key), huge) == "too_large"
    big = make(key).seal(bytes(1000))
    assert len(big) > 1024
    assert reason(receiver, big) == "too_large"
    assert receiver.stats()["too_large"] == 2


def test_fast_path_falls_back_when_fernet_changes() -> None:
    assert _fast_decrypters(cast(Any, [object()])) is None
    # cryptography 51 has no private _decrypt_data (and a fast decrypt of its own)
    has_private = hasattr(Fernet(generate_key()), "_decrypt_data")
    assert (_fast_decrypters([Fernet(generate_key())]) is not None) is has_private


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        "c2hvcnQ=",
        base64.urlsafe_b64encode(b"k" * 31).decode(),
        base64.urlsafe_b64encode(b"k" * 33).decode(),
        "é" * 44,
        Fernet.generate_key()[:-1],  # no "=": cryptography 51 takes it, older ones and peers may not
        b"\xffsecret-bytes",
        SecretStr("zz-secret-zz"),
        12345,
    ],
)
def test_bad_key(bad: Any) -> None:
    for keys in (bad, [generate_key(), bad]):
        with pytest.raises(ConfigError) as info:
            Sealer(keys)
        text = str(info.value) + repr(info.value)
        assert "generate_key" in text or "must be" in text
        assert info.value.__cause__ is None
        assert info.value.__context__ is None
        secret = bad.get_secret_value() if isinstance(bad, SecretStr) else bad
        if isinstance(secret, bytes):
            secret = secret.decode("latin-1")
        assert str(secret) not in text


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": float("nan")},
        {"max_future": -1},
        {"max_token_size": 10},
        {"max_replay_entries": 0},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Sealer(generate_key(), **options)


@pytest.mark.parametrize("keys", [[], (), None, 3.5, bytearray(b"x")])
def test_bad_key_containers(keys: Any) -> None:
    with pytest.raises(ConfigError):
        Sealer(keys)


def test_repr_and_errors_hold_no_secrets(make: Callable[..., Sealer]) -> None:
    k1, k2 = generate_key(), generate_key()
    sealer = make([k1, k2])
    assert repr(sealer) == str(sealer) == "<Sealer keys=2 ttl=60s>"
    sealed = make(k1).seal(SECRET)
    errors = [
        *(SealRejected(r) for r in ("cleartext", "malformed", "too_large")),
        pytest.raises(SealRejected, make(generate_key()).open, sealed).value,
    ]
    sealer.open(sealed)
    errors.append(pytest.raises(SealRejected, sealer.open, sealed).value)
    for exc in errors:
        assert isinstance(exc, BusError)
        text = str(exc) + repr(exc) + repr(exc.args)
        for secret in (k1, k2, SECRET.decode(), sealed.decode("latin-1")[2:]):
            assert secret not in text
        assert exc.reason in str(exc)
        assert pickle.loads(pickle.dumps(exc)).reason == exc.reason
    assert errors[-1].__context__ is None


def test_missing_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    for call in (generate_key, lambda: Sealer("k" * 44)):
        with pytest.raises(ConfigError, match=r"pip install 'addrbus\[crypto\]'"):
            call()


def test_import_addrbus_does_not_import_cryptography() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import addrbus, addrbus._wire.sealing\n"
        "assert not [m for m in sys.modules if m.startswith('cryptography.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
