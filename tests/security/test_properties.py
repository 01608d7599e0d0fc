"""Properties: decoding arbitrary bytes raises only the documented errors; envelopes round-trip."""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from addrbus import EventBus
from addrbus._wire.bodies import encode_body, spec_for
from addrbus._wire.envelope import Envelope, Failure
from addrbus._wire.frames import MAGIC, FrameError, decode_frame, encode_frame
from addrbus._wire.sealing import MAGIC as SEALED
from addrbus._wire.sealing import Sealer, SealRejected, generate_key
from tests.conftest import unique
from tests.security._harness import FAKE_NODE

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_INPUT = 70_000  # past the largest UDP datagram

FIELDS = ["v", "kind", "ns", "addr", "id", "cid", "rto", "src", "dst", "dl", "ts", "hdr", "err", "body"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _big(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# Small inputs from Hypothesis itself (so it can shrink them), large ones from a seeded PRNG.
any_bytes = st.binary(max_size=2_000) | st.builds(_big, st.integers(0, MAX_INPUT), st.integers())


@st.composite
def frame_like(draw: st.DrawFn) -> bytes:
    """Bytes that look more and more like a frame: magic, JSON envelope-ish object, separator, body."""
    env = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), json_values, max_size=8))
    if draw(st.booleans()):
        env.setdefault("kind", draw(st.sampled_from(["pub", "send", "req", "reply", "fail", "ctl", "x"])))
    text = json.dumps(env).encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=20))
    body = json.dumps(draw(json_values)).encode() if draw(st.booleans()) else draw(st.binary(max_size=50))
    return MAGIC + text + b"\n" + body


@st.composite
def token_like(draw: st.DrawFn) -> bytes:
    """Sealed-looking bytes: the magic, then base64 of a Fernet-shaped (but unsigned) token."""
    blocks = draw(st.integers(0, 8))
    stamp = struct.pack(">Q", draw(st.integers(0, 2**64 - 1)))
    raw = bytes([draw(st.sampled_from([0x80, 0x81, 0x00]))]) + stamp + draw(st.binary(min_size=16 + 16 * blocks + 32,
                                                                                       max_size=16 + 16 * blocks + 32))
    text = base64.urlsafe_b64encode(raw)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.binary(max_size=3)) + text[at + 1 :]
    return SEALED + text


@PROPERTY
@given(any_bytes | any_bytes.map(lambda b: MAGIC + b) | frame_like())
def test_decode_frame_raises_only_frame_error(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError as exc:
        assert exc.reason and exc.reason.isidentifier()


_SEALER = Sealer(generate_key(), ttl=60.0)


@PROPERTY
@given(any_bytes | any_bytes.map(lambda b: SEALED + b) | token_like())
def test_sealer_open_raises_only_seal_rejected(data: bytes) -> None:
    try:
        _SEALER.open(data)
    except SealRejected as exc:
        assert exc.reason in {"too_large", "cleartext", "malformed", "invalid", "expired", "future", "replay"}


async def test_on_frame_never_raises(make_bus: Callable[..., EventBus]) -> None:
    key = generate_key()
    hub = unique("hub")
    plain = make_bus(f"memory://{hub}?serialize=1", namespace="p")
    keyed = make_bus(f"memory://{hub}?serialize=1", namespace="k", shared_key=key)
    objects = make_bus(f"memory://{unique('hub')}", namespace="o")
    for bus in (plain, keyed, objects):
        bus.on("a", lambda body: body)
        await bus.start()
    sealer = Sealer(key)

    @PROPERTY
    @given(any_bytes | frame_like() | token_like() | frame_like().map(sealer.seal) | json_values)
    def feed(data: Any) -> None:
        for bus in (plain, keyed, objects):
            bus._on_frame(data)  # raises nothing, whatever it gets

    feed()


# -- round trips -------------------------------------------------------------------------

text = st.text(max_size=30)
finite = st.floats(allow_nan=False, allow_infinity=False)


class Inner(BaseModel):
    when: datetime
    uid: UUID
    tags: list[str]
    score: float


class Outer(BaseModel):
    name: str
    inner: Inner
    items: list[Inner]
    counts: dict[str, int]
    maybe: Inner | None = None


inners = st.builds(
    Inner,
    when=st.datetimes(timezones=st.none() | st.just(UTC)),
    uid=st.uuids(),
    tags=st.lists(text, max_size=3),
    score=finite,
)
outers = st.builds(
    Outer,
    name=text,
    inner=inners,
    items=st.lists(inners, max_size=3),
    counts=st.dictionaries(text, st.integers(), max_size=3),
    maybe=st.none() | inners,
)
envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(["pub", "send", "req", "reply", "fail", "ctl"]),
    ns=text,
    addr=text,
    id=text,
    cid=st.none() | text,
    rto=st.none() | text,
    src=text,
    dst=st.none() | text,
    dl=st.none() | finite,
    ts=finite,
    hdr=st.dictionaries(text, text, max_size=5),
    err=st.none() | st.builds(Failure, type=text, code=st.integers(-(2**63), 2**63 - 1), message=text,
                              remote_type=text),
)


@PROPERTY
@given(envelopes, outers)
def test_envelope_and_model_body_round_trip(env: Envelope, body: Outer) -> None:
    got, raw = decode_frame(encode_frame(env, encode_body(body)))
    assert got == env
    assert spec_for(Outer).from_json(raw) == body


@PROPERTY
@given(envelopes, st.lists(st.datetimes() | st.uuids() | inners, max_size=4))
def test_builtin_bodies_round_trip(env: Envelope, body: list[Any]) -> None:
    got, raw = decode_frame(encode_frame(env, encode_body(body)))
    assert got == env
    assert spec_for(list[datetime | UUID | Inner]).from_json(raw) == body


@PROPERTY
@given(envelopes, outers)
def test_sealed_round_trip(env: Envelope, body: Outer) -> None:
    key = generate_key()
    data = encode_frame(env, encode_body(body))
    assert Sealer([key]).open(Sealer(key).seal(data)) == data


def test_fixed_example_for_readers() -> None:
    # The same property on one readable case.
    env = Envelope(kind="req", ns="shop", addr="orders.place", id=f"{FAKE_NODE}-1", ts=time.time(),
                   hdr={"trace": "t-1"})
    body = Inner(when=datetime(2024, 2, 29, 12, 0, tzinfo=UTC), uid=UUID(int=7), tags=["a"], score=1.5)
    got, raw = decode_frame(encode_frame(env, encode_body(body)))
    assert (got, spec_for(Inner).from_json(raw)) == (env, body)
