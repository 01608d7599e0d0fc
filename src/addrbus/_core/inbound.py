"""Frames from the transport: open, check, and hand each to replies, membership or local handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._patterns import GROUP_SEP, split_key
from .._wire.bodies import spec_for
from .._wire.envelope import Failure
from .._wire.frames import FrameError
from .handlers import at

if TYPE_CHECKING:
    from .._counters import Counters
    from .._ratelog import RateLimitedLog
    from .._wire.envelope import Envelope
    from .._wire.wire import Wire
    from ..transports.base import Confirm
    from .handlers import Item
    from .membership import Membership
    from .node import Node
    from .requests import Replies
    from .routing import Router

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move


#: What a dropped frame's reason most likely means, for the log line (the counter keeps the reason).
_HINTS = {
    "invalid": "it could not be opened with this bus's shared_key (different key?)",
    "cleartext": "it was not sealed, and this bus has a shared_key (the sender has none?)",
    "bad_magic": "it is no addrbus frame, or it is sealed and this bus has no shared_key (the sender has one?)",
    "other_namespace": "it is of another namespace",
}


class Inbound:
    """Dispatch every frame this node receives; never raises into the transport."""

    def __init__(self, node: Node, wire: Wire, router: Router, replies: Replies, membership: Membership,
                 counters: Counters, ratelog: RateLimitedLog) -> None:
        self._node = node
        self._wire = wire
        self._router = router
        self._replies = replies
        self._membership = membership
        self._counters = counters
        self._ratelog = ratelog
        self._background: set[asyncio.Task[None]] = set()

    def on_frame(self, frame: Any, confirm: Confirm | None = None) -> None:
        """Handle one frame from the transport; never raises.

        ``confirm``, from a transport that learns peers' addresses from what it
        receives, is called with the envelope's sender once the frame opened
        and passed every check, and never for a frame that did not.
        """
        self._counters.received += 1
        try:
            env, body, is_json = self._wire.open(frame)
            node = self._node
            if env.ns != node.namespace:
                raise FrameError("other_namespace")
            if env.dst is not None and env.dst != node.id:
                raise FrameError("not_for_us")
            if self._wire.seen_before(env.id):
                raise FrameError("duplicate")
            self._dispatch(env, body, is_json)
            if confirm is not None:
                confirm(env.src)
        except FrameError as exc:
            self._counters.count(f"dropped.{exc.reason}")
            hint = _HINTS.get(exc.reason)
            self._ratelog.warning(exc.reason, "dropped a received frame: %s%s", exc.reason,
                                  f" ({hint})" if hint else "")
        except Exception as exc:
            self._counters.count("dropped.bad_frame")
            self._ratelog.warning("bad_frame", "dropped a received frame: %s", type(exc).__name__)

    def _dispatch(self, env: Envelope, body: Any, is_json: bool) -> None:
        kind = env.kind
        if kind in ("reply", "fail"):
            if env.cid is None:
                raise FrameError("bad_envelope")
            if kind == "fail":
                err = env.err or Failure(type="RECIPIENT_FAILURE")
                self._replies.resolve(env.cid, "fail", None, False, env.hdr, env.src, err.code, err.message,
                                      err.remote_type, err.type)
            else:
                self._replies.resolve(env.cid, "reply", body, is_json, env.hdr, env.src, 0, "", "", "", env.id)
            return
        if kind == "ctl":
            if is_json:
                body = spec_for(Any).from_json(body)
            self._membership.on_ctl(env.addr, env.src, body)
            return
        addr = env.addr  # valid: Wire.open checked it (check_envelope)
        router = self._router
        if kind == "pub":
            item: Item = (body, is_json, env.hdr, env.id, None, None, env.src, env.ts, None)
            if GROUP_SEP in addr:  # a publish for one consumer of a group here
                base, group = split_key(addr)
                one = router.pick_local_group(base, group or "")
                if one is None:
                    self._counters.count("dropped.no_handlers")
                elif not one.deliver(at(item, base)):
                    one.overflow_warning()
                    self._counters.count("dropped.overflow")
                return
            for reg in router.local_for(addr) if router.patterns else router.local.get(addr, ()):
                if not reg.deliver(at(item, addr) if reg.pattern else item):  # from the network: never waits
                    reg.overflow_warning()
                    self._counters.count("dropped.overflow")
            return
        target = router.pick_local(addr)
        cid = env.cid if kind == "req" else None
        if target is None:
            self._counters.count("dropped.no_handlers")
            if cid is not None:
                self.spawn(self._replies.answer(cid, env.rto, "fail", None, -1, f"no handlers for address {addr!r}",
                                                "NO_HANDLERS"))
            return
        item = (body, is_json, env.hdr, env.id, cid, env.rto, env.src, env.ts, env.dl)
        if not target.deliver(at(item, addr) if target.pattern else item):
            target.overflow_warning()
            self._counters.count("dropped.overflow")
            if cid is not None:
                self.spawn(self._replies.answer(cid, env.rto, "fail", None, 503,
                                                f"the consumer of {addr!r} is overloaded; the request was dropped",
                                                "Overloaded"))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
