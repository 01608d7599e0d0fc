"""Envelope and body encoding: exact round trips, and rejection with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from addrbus._wire.bodies import describe_validation_error, encode_body, spec_for
from addrbus._wire.envelope import Envelope, Failure
from addrbus._wire.frames import FrameError, decode_frame, encode_frame


class Inner(BaseModel):
    at: datetime
    ref: uuid.UUID


class Outer(BaseModel):
    name: str
    inner: list[Inner]
    kind: str = "x"  # a user field named like an envelope field never collides


def test_frame_round_trip_is_exact() -> None:
    body = Outer(name="n", inner=[Inner(at=datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), ref=uuid.uuid4())])
    env = Envelope(kind="req", ns="shop", addr="a.b", id="n-1", cid="n-1", rto="n", src="n", dl=1.5, ts=1.0,
                   hdr={"k": "v"})
    decoded, raw = decode_frame(encode_frame(env, encode_body(body)))
    assert decoded == env
    assert spec_for(Outer).from_json(raw) == body


def test_failures_travel_in_the_envelope() -> None:
    env = Envelope(kind="fail", cid="c", err=Failure(type="RECIPIENT_FAILURE", code=409, message="m", remote_type="E"))
    decoded, _ = decode_frame(encode_frame(env, b"null"))
    assert decoded.err == env.err


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "bad_magic"),
        (b"XX{}\nnull", "bad_magic"),
        (b"AB{}", "truncated"),
        (b"AB{not json}\nnull", "bad_envelope"),
        (b'AB{"kind":"pub","v":99}\nnull', "bad_version"),
        (b'AB{"kind":"nope"}\nnull', "bad_envelope"),
        (b'AB{"kind":"pub","surprise":1}\nnull', "bad_envelope"),
        (b'AB{"kind":"pub","hdr":{"a":1}}\nnull', "bad_envelope"),
        (b"AB" + b"[" * 1000 + b"]" * 1000 + b"\nnull", "bad_envelope"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(frame)
    assert info.value.reason == reason


def test_every_truncation_of_a_frame_is_rejected_or_decodes() -> None:
    frame = encode_frame(Envelope(kind="pub", addr="a", id="i"), encode_body({"x": [1, 2, 3]}))
    for n in range(len(frame)):
        try:
            decode_frame(frame[:n])
        except FrameError:
            pass


def test_validation_errors_name_fields_not_values() -> None:
    from pydantic import TypeAdapter, ValidationError

    with pytest.raises(ValidationError) as info:
        TypeAdapter(Outer).validate_python({"name": 5, "inner": [{"at": "CANARY-VALUE"}]})
    text = describe_validation_error(info.value)
    assert "inner.0.at" in text and "inner.0.ref" in text and "name" in text
    assert "CANARY" not in text


def test_unserialisable_bodies_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_body(object())


def test_specs_are_cached_per_type() -> None:
    assert spec_for(Outer) is spec_for(Outer)
    any_spec: Any = spec_for(Any)
    assert any_spec.from_python(x := object()) is x
