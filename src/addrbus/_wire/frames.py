"""Frames: ``MAGIC + envelope JSON + b"\\n" + body JSON``, and the checks a received envelope must pass."""

from __future__ import annotations

import math

from pydantic import ValidationError

from .._addresses import is_valid_address
from .envelope import MAX_HEADER_CHARS, MAX_HEADERS, MAX_ID_LENGTH, WIRE_VERSION, Envelope

MAGIC = b"AB"
_SEP = b"\n"


class FrameError(Exception):
    """A received frame was rejected; ``reason`` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# The validator itself: model_validate_json adds a Python frame per received frame.
_validate_envelope = Envelope.__pydantic_validator__.validate_json


def encode_frame(env: Envelope, body: bytes) -> bytes:
    """Encode an envelope and an already-encoded body as one frame."""
    return MAGIC + env.__pydantic_serializer__.to_json(env, exclude_defaults=True) + _SEP + body


def decode_frame(frame: bytes) -> tuple[Envelope, bytes]:
    """Decode a frame into its envelope and the body's JSON bytes.

    :raises FrameError: with a short reason; never anything else.
    """
    if type(frame) is not bytes:
        raise FrameError("not_bytes")
    if not frame.startswith(MAGIC):
        raise FrameError("bad_magic")
    end = frame.find(_SEP, 2)
    if end < 0:
        raise FrameError("truncated")
    try:
        env = _validate_envelope(frame[2:end])
    except ValidationError as exc:
        version_error = any(e["loc"] == ("v",) for e in exc.errors(include_input=False))
        raise FrameError("bad_version" if version_error else "bad_envelope") from None
    except (ValueError, RecursionError):
        raise FrameError("bad_envelope") from None
    if env.v != WIRE_VERSION:
        raise FrameError("bad_version")
    return env, frame[end + 1 :]


_ADDRESSED = frozenset({"pub", "send", "req"})


def check_envelope(env: Envelope) -> None:
    """Refuse an envelope that no bus of this version would send.

    The model checks types; this checks the limits every sender is held to, so
    junk can neither reach a handler nor cost memory (ids are remembered).

    :raises FrameError: ``bad_version``, ``bad_envelope``, ``bad_headers`` or ``bad_address``.
    """
    if env.v != WIRE_VERSION:
        raise FrameError("bad_version")
    if (
        len(env.id) > MAX_ID_LENGTH
        or len(env.src) > MAX_ID_LENGTH
        or (env.cid is not None and len(env.cid) > MAX_ID_LENGTH)
        or (env.rto is not None and len(env.rto) > MAX_ID_LENGTH)
        or (env.dst is not None and len(env.dst) > MAX_ID_LENGTH)
        or not math.isfinite(env.ts)
        or (env.dl is not None and not math.isfinite(env.dl))
    ):
        raise FrameError("bad_envelope")
    hdr = env.hdr
    if hdr and (len(hdr) > MAX_HEADERS or sum(len(k) + len(v) for k, v in hdr.items()) > MAX_HEADER_CHARS):
        raise FrameError("bad_headers")
    if env.kind in _ADDRESSED and not is_valid_address(env.addr):
        raise FrameError("bad_address")
