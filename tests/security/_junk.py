"""A catalogue of hostile frames, each with the drop reasons it may be counted under.

Every item is what a non-bus (or a buggy node holding the key) could put on the
medium. None of it may reach a handler: each one is counted once in
``bus.stats()``, under ``dropped.<reason>`` or, for a body that fails the
handler's validation, ``failures.invalid_body`` (shown here as ``invalid_body``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from addrbus._wire.frames import MAGIC as FRAME_MAGIC
from addrbus._wire.sealing import generate_key
from tests.security._harness import FAKE_NODE, frame, new_id, sealed

JUNK_CANARY = "junk-canary-d41d8c"  # must never show up in a log line

DECODE = frozenset({"bad_magic", "truncated", "bad_envelope", "bad_version"})
SEAL = frozenset({"cleartext", "malformed", "invalid"})


class Item(BaseModel):
    """What the consumer under attack expects; junk that parses carries ``n < 0``."""

    n: int


@dataclass(frozen=True)
class Junk:
    label: str
    payload: bytes
    reasons: frozenset[str]


def _raw(env: dict[str, Any], body: bytes = b'{"n":-1}') -> bytes:
    return FRAME_MAGIC + json.dumps(env, separators=(",", ":")).encode() + b"\n" + body


def _text(env: dict[str, Any], **swap: str) -> bytes:
    """Return the frame of ``env`` with ``"@name@"`` placeholders replaced by raw JSON text."""
    data = _raw(env)
    for name, text in swap.items():
        data = data.replace(f'"@{name}@"'.encode(), text.encode())
    return data


def content_junk(namespace: str, address: str) -> list[Junk]:
    """Frames in the bus's own format (cleartext) that must still be refused."""

    def env(**fields: Any) -> dict[str, Any]:
        base = {"kind": "pub", "ns": namespace, "addr": address, "id": new_id(), "src": FAKE_NODE, "ts": time.time()}
        base.update(fields)
        return base

    deep = "[" * 1000 + "]" * 1000
    huge = "9" * 5000
    items = [
        # not JSON, or not the envelope's shape
        Junk("non-json", FRAME_MAGIC + b"{not json, " + JUNK_CANARY.encode() + b"\n{}", DECODE),
        Junk("non-utf8", FRAME_MAGIC + b"\xff\xfe\xfd\n{}", DECODE),
        Junk("no-separator", FRAME_MAGIC + b'{"kind":"pub"', DECODE),
        Junk("json-array", FRAME_MAGIC + b"[1,2,3]\nnull", DECODE),
        Junk("json-string", FRAME_MAGIC + b'"' + JUNK_CANARY.encode() + b'"\nnull', DECODE),
        Junk("empty-object", FRAME_MAGIC + b"{}\nnull", DECODE),
        Junk("unknown-kind", _raw(env(kind="exec")), DECODE),
        Junk("address-not-a-string", _raw(env(addr=5)), DECODE),
        Junk("header-not-a-string", _raw(env(hdr={"a": 1})), DECODE),
        Junk("unknown-field", _raw(env(evil=JUNK_CANARY)), DECODE),
        Junk("null-kind", _raw(env(kind=None)), DECODE),
        # nesting and numbers past every sane limit
        Junk("deep-envelope", FRAME_MAGIC + deep.encode() + b"\nnull", DECODE),
        Junk("deep-header", _text(env(hdr="@h@"), h='{"a":' + deep + "}"), DECODE),
        Junk("deep-body", _raw(env(), deep.encode()), frozenset({"invalid_body"})),
        Junk("huge-version", _text(env(v="@v@"), v=huge), DECODE),
        Junk("huge-int-body", _raw(env(), b'{"n":' + huge.encode() + b"}"), frozenset({"invalid_body"})),
        Junk("huge-timestamp", _text(env(ts="@t@"), t=huge[:400]), DECODE),
        Junk("huge-deadline", _text(env(kind="send", dl="@t@"), t=huge[:400]), DECODE),
        # versions this bus does not speak
        *(Junk(f"version-{v}", _raw(env(v=v)), frozenset({"bad_version"})) for v in (0, 2, -1, 2**64)),
        # bodies that fail the handler's validation
        Junk("body-wrong-type", _raw(env(), b'{"n":"' + JUNK_CANARY.encode() + b'"}'), frozenset({"invalid_body"})),
        Junk("body-null", _raw(env(), b"null"), frozenset({"invalid_body"})),
        Junk("body-not-json", _raw(env(), b"{" + JUNK_CANARY.encode()), frozenset({"invalid_body"})),
        Junk("body-empty", _raw(env(), b""), frozenset({"invalid_body"})),
        # addresses a bus would never send
        *(
            Junk(f"address-{name}", _raw(env(addr=addr)), frozenset({"bad_address"}))
            for name, addr in (
                ("nul", f"{address}\x00{JUNK_CANARY}"),
                ("newline", f"{address}\n{JUNK_CANARY}"),
                ("escape", f"\x1b[2J{JUNK_CANARY}"),
                ("c1", f"{address}\x85"),
                ("blank", "   "),
                ("too-long", "a" * 256),
            )
        ),
        # header sets past the limits a sender is held to (64 headers, 8192 characters)
        Junk("headers-3000", _raw(env(hdr={f"h{i}": "" for i in range(3000)})), frozenset({"bad_headers"})),
        Junk("header-20k", _raw(env(hdr={"h": "v" * 20_000})), frozenset({"bad_headers"})),
        # ids are remembered (duplicates, replies): one must not cost kilobytes
        Junk("id-30k", _raw(env(id=new_id() + "x" * 30_000)), frozenset({"bad_envelope"})),
        Junk("source-30k", _raw(env(src="s" * 30_000)), frozenset({"bad_envelope"})),
        # well-formed, but not something this bus can act on
        Junk("reply-without-cid", _raw(env(kind="reply")), frozenset({"bad_envelope"})),
        Junk("reply-nobody-waits-for", _raw(env(kind="reply", cid=new_id())), frozenset({"late_reply"})),
        Junk("send-to-nobody", _raw(env(kind="send", addr=f"{address}.nobody")), frozenset({"no_handlers"})),
        Junk("for-another-node", _raw(env(dst="f" * 16)), frozenset({"not_for_us"})),
        Junk("other-namespace", _raw(env(ns=namespace + ".x")), frozenset({"other_namespace"})),
        Junk("control-unknown-op", _raw(env(kind="ctl", addr="rm -rf"), b'{"v":2,"seq":1}'), frozenset({"bad_frame"})),
        Junk("control-not-object", _raw(env(kind="ctl", addr="hello"), b"[1]"), frozenset({"bad_frame"})),
    ]
    once = _raw(env(kind="send"), b'"not an item"')
    items += [
        Junk("first-copy", once, frozenset({"invalid_body"})),
        Junk("second-copy", once, frozenset({"duplicate", "replay"})),
    ]
    return items


def catalogue(namespace: str, address: str, key: str | None, max_payload: int) -> list[Junk]:
    """Return every kind of junk for a bus of ``namespace`` (sealed with ``key``, if any)."""
    rng = random.Random(5)
    template = frame(namespace, address, {"n": -1}, kind="send", id=new_id())
    items = [
        Junk(f"random-{size}", b"\x00" + rng.randbytes(size), DECODE | SEAL) for size in (0, 1, 2, 15, 255, 4096)
    ]
    items.append(Junk("empty", b"", DECODE | SEAL))
    if max_payload < 2**20:
        items.append(Junk("oversized", FRAME_MAGIC + b"x" * max_payload, frozenset({"too_large"})))
    if key is None:
        items += [Junk(f"truncated-{i}", template[:i], DECODE | {"duplicate", "invalid_body"})
                  for i in range(len(template))]
        items += content_junk(namespace, address)
        items.append(Junk("sealed-to-clear-bus", sealed(generate_key(), template), frozenset({"bad_magic"})))
        return items
    token = sealed(key, template)
    items += [Junk(f"truncated-{i}", token[:i], SEAL) for i in range(len(token))]
    for at in (2, 3, 5, 12, 30, len(token) // 2, len(token) - 45, len(token) - 2, len(token) - 1):
        flipped = bytearray(token)
        flipped[at] = ord("A") if flipped[at] != ord("A") else ord("B")
        items.append(Junk(f"tampered-{at}", bytes(flipped), SEAL))
    items += [
        Junk("token-extended", token + b"AAAA", SEAL),
        Junk("wrong-key", sealed(generate_key(), template), frozenset({"invalid"})),
        Junk("cleartext-frame", template, frozenset({"cleartext"})),
        Junk("expired", sealed(key, frame(namespace, address, {"n": -1}), age=120), frozenset({"expired"})),
        Junk("from-the-future", sealed(key, frame(namespace, address, {"n": -1}), age=-120), frozenset({"future"})),
    ]
    again = sealed(key, frame(namespace, address, "not an item", kind="send"))
    items += [
        Junk("token-first", again, frozenset({"invalid_body"})),
        Junk("token-replayed", again, frozenset({"replay"})),
    ]
    # Content junk from a node that holds the key: opened, then refused all the same.
    items += [Junk(j.label, sealed(key, j.payload), j.reasons) for j in content_junk(namespace, address)]
    return items
