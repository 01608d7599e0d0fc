"""The way out: publish, send and request routed to a local handler or prepared as a frame for a node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from threading import get_ident
from typing import TYPE_CHECKING, Any

from .._endpoint import TypedAddress
from .._exceptions import (
    BusNotRunning,
    DeliveryUnknown,
    NoHandlers,
    RecipientFailure,
    RecipientGone,
    TransportError,
)
from .._ids import now
from .._patterns import SYSTEM_PREFIX
from .._wire.bodies import spec_for
from .._wire.envelope import Envelope, check_headers, make_envelope
from .checks import MAX_TIMEOUT, NOT_RUNNING, SENDABLE, check_loop, check_node, sendable
from .diagnose import no_handlers
from .fanout import Fanout
from .handlers import at

if TYPE_CHECKING:
    from .._counters import Counters
    from .._wire.wire import Wire
    from .direct import Direct
    from .handlers import Item
    from .node import Node
    from .registration import Registration
    from .requests import PendingRequests
    from .routing import Router, Target


#: A request bound for another node: (node id, envelope, body).
Remote = tuple[str, Envelope, Any]
#: What a publish left for its caller (:meth:`Outbound.take`): full backlogs, and copies for other nodes.
Held = tuple["list[tuple[Registration, Item]]", "list[tuple[str, Envelope]] | None"]

ANY_NODE = ""  # a request's node when the transport's engine chooses it (Transport.routes_sends)


class Outbound:
    """Route what the bus's callers publish, send and request.

    Holds no message state: only, on transports without flow control (UDP), a
    window of requests in flight per node. Interceptors run before (``_sending``).
    """

    def __init__(self, node: Node, router: Router, wire: Wire, pending: PendingRequests, counters: Counters,
                 node_gone: Callable[[str, str], None]) -> None:
        self._node = node
        self._router = router
        self._wire = wire
        self._by_engine = wire.routes_sends  # read once: a bus's transport never changes
        self._pending = pending
        self._counters = counters
        self._node_gone = node_gone
        self._windows: dict[str, asyncio.Semaphore] = {}  # node -> requests in flight to it (UDP)
        #: Full local backlogs (policy ``wait``) the last publish or request met; see :meth:`wait_blocked`.
        #: Filled by one call and taken (:meth:`take`) before its caller awaits, so callers never share it.
        self.blocked: list[tuple[Registration, Item]] = []
        #: Publishes that patterns or groups consume, and the copies the last one needs (:meth:`send_copies`).
        self.fanout = Fanout(node, router, self._full)
        self.copies: list[tuple[str, Envelope]] | None = None
        #: The last call left work for its caller: ``blocked`` or ``copies`` (one check on the hot path).
        self.more = False
        self.direct: Direct | None = None  # set by the bus: requests that start their local handler

    def no_handlers(self, addr: str, to: str | None = None) -> NoHandlers:
        """Return the ``NoHandlers`` of a call to ``addr``: where the bus looked, what it knows, close names."""
        return no_handlers(self._router, self._node, self._wire.describe, addr, to)

    def forget(self, node: str | None = None) -> None:
        """Drop the flow-control window of ``node`` (every node's when None)."""
        if node is None:
            self._windows.clear()
        else:
            self._windows.pop(node, None)

    def publish(self, address: Any, body: Any, headers: dict[str, str] | None,
                require_handlers: bool = False, to: str | None = None) -> Envelope | None:
        """Hand a publish to the local handlers; return its envelope if other nodes consume the address.

        With ``to`` (a node id), only that node's handlers get it: the envelope
        returned, if any, is addressed to that node alone (``dst``).
        """
        try:
            addr = SENDABLE[address]
        except (KeyError, TypeError):
            addr = sendable(address)
        node = self._node
        if not node.running:
            raise BusNotRunning(NOT_RUNNING)
        if get_ident() != node.thread:  # cheap: get_running_loop() costs 0.2 us on 3.11
            check_loop(node)
        hdrs = check_headers(headers)
        router = self._router
        if to is not None or require_handlers:
            if to is not None:
                return self._publish_to(addr, body, hdrs, check_node(to))
            if not router.count(addr):
                self._counters.count("failures.no_handlers")
                raise self.no_handlers(addr)
        msg_id = node.next_id()
        ts = now()
        self._counters.published += 1
        if not router.patterns:  # the common case: exact addresses only
            regs = router.local.get(addr)
            if regs:
                item = (body, False, hdrs, msg_id, None, None, node.id, ts, None)
                for reg in regs:
                    if not reg.deliver(item):
                        self._full(reg, item)
            if addr in router.remote:
                return make_envelope(kind="pub", ns=node.namespace, addr=addr, id=msg_id, src=node.id, ts=ts,
                                     hdr=hdrs)
            return None
        self._deliver_local(addr, (body, False, hdrs, msg_id, None, None, node.id, ts, None))
        env, self.copies = self.fanout.publish(addr, body, hdrs, msg_id, ts)
        if self.copies is not None:
            self.more = True
        return env

    def _publish_to(self, addr: str, body: Any, hdrs: dict[str, str], to: str) -> Envelope | None:
        node = self._node
        router = self._router
        here = to == node.id
        # What a targeted publish reaches there: the exact and the ungrouped pattern consumers.
        if not (router.local_for(addr) if here else
                router.remote.get(addr, {}).get(to) or (router.patterns and to in router.pattern_nodes(addr))):
            self._counters.count("failures.no_handlers")
            raise self.no_handlers(addr, to)
        msg_id = node.next_id()
        self._counters.published += 1
        if here:
            self._deliver_local(addr, (body, False, hdrs, msg_id, None, None, node.id, now(), None))
            return None
        return make_envelope(kind="pub", ns=node.namespace, addr=addr, id=msg_id, src=node.id, dst=to, ts=now(),
                             hdr=hdrs)

    def _deliver_local(self, addr: str, item: Item) -> None:
        """Hand a publish to this node's consumers of ``addr``: exact ones and ungrouped patterns'."""
        for reg in self._router.local_for(addr):
            one = at(item, addr) if reg.pattern else item
            if not reg.deliver(one):
                self._full(reg, one)

    def take(self) -> Held:
        """Take the work the last call left for its caller (``more``), before that caller awaits and others run."""
        held = (self.blocked, self.copies)
        self.blocked, self.copies, self.more = [], None, False
        return held

    async def finish_publish(self, held: Held, body: Any) -> None:
        """Wait for room in the full backlogs a publish met, then send its copies to pattern and group consumers."""
        blocked, copies = held
        await self._wait_for_room(blocked)
        for node, env in copies or ():
            await self._wire.unicast(node, env, body)

    def _full(self, reg: Registration, item: Item) -> None:
        """A local handler's backlog refused ``item``: have the caller wait for room, or count the drop."""
        if reg.waits:
            self.blocked.append((reg, item))
            self.more = True
        else:
            self._counters.count("dropped.overflow")  # deliver() logged it

    async def wait_blocked(self) -> None:
        """Wait for room in the full local backlogs the last call met (policy ``wait``); drop what finds none.

        A request dropped so fails at once with ``RecipientFailure`` 503, as one dropped on arrival does.
        """
        await self._wait_for_room(self.take()[0])

    async def _wait_for_room(self, blocked: list[tuple[Registration, Item]]) -> None:
        for reg, item in blocked:
            if await reg.put(item):
                continue
            self._counters.count("dropped.overflow")
            cid = item[4]
            entry = None if cid is None else self._pending.get(cid)
            if entry is not None and not entry.future.done():
                self._counters.count("failures.overflow")
                entry.future.set_exception(RecipientFailure(
                    f"the consumer of {reg.address!r} is overloaded; the request was dropped", code=503,
                    remote_type="Overloaded"))

    def _bus_routes(self, addr: str) -> bool:
        """Tell whether a pattern or a group consumes ``addr``: then the bus picks the node, not the engine.

        The engine routes by exact address: it knows nothing of grouped consumers,
        and would hand a send to one consumer of the address and one of each pattern.
        """
        router = self._router
        return bool(router.patterns) and bool(router.matching(addr))

    def _target_on(self, addr: str, to: str) -> Target | None:
        """Return the consumer of ``addr`` on node ``to`` only (a local one, or that node's id), or None."""
        router = self._router
        if to == self._node.id:
            return router.pick_local(addr)
        if addr.startswith(SYSTEM_PREFIX):
            return to  # every node consumes the bus's own addresses, unannounced
        held = router.remote.get(addr, {}).get(to) or (
            router.patterns and any(to in router.remote.get(key, ()) for key in router.matching(addr)))
        return to if held else None

    async def send(self, address: Any, body: Any, headers: dict[str, str] | None, to: str | None = None) -> None:
        """Deliver to exactly one handler in the whole bus."""
        try:
            addr = SENDABLE[address]
        except (KeyError, TypeError):
            addr = sendable(address)
        node = self._node
        if not node.running:
            raise BusNotRunning(NOT_RUNNING)
        if get_ident() != node.thread:  # cheap: get_running_loop() costs 0.2 us on 3.11
            check_loop(node)
        hdrs = check_headers(headers)
        target = self._router.pick(addr) if to is None else self._target_on(addr, check_node(to))
        if target is None:
            self._counters.count("failures.no_handlers")
            raise self.no_handlers(addr, to)
        self._counters.sent += 1
        msg_id = node.next_id()
        if isinstance(target, str):
            if self._by_engine and to is None and not self._bus_routes(addr):
                # The engine picks the node: one that died is never it.
                env = make_envelope(kind="send", ns=node.namespace, addr=addr, id=msg_id, src=node.id, ts=now(),
                                    hdr=hdrs)
                await self._wire.send_any(env, body)
                return
            env = make_envelope(kind="send", ns=node.namespace, addr=addr, id=msg_id, src=node.id,
                                dst=target, ts=now(), hdr=hdrs)
            if not await self._wire.unicast(target, env, body):
                self._node_gone(target, "its inbox has no listener")
                raise RecipientGone(f"the node consuming {addr!r} is gone")
        else:
            item: Item = (body, False, hdrs, msg_id, None, None, node.id, now(), None)
            if target.pattern:
                item = at(item, addr)
            if not target.deliver(item) and not (target.waits and await target.put(item)):
                self._counters.count("dropped.overflow")

    def submit(self, address: Any, body: Any, timeout: float, headers: dict[str, str] | None,
               response_type: Any, to: str | None = None) -> tuple[str, asyncio.Future[Any], Remote | None]:
        """Register a request and hand it to a local handler, or prepare it for a remote one.

        A plain function, not a coroutine: it is on the hot path of every request.
        """
        try:
            addr = SENDABLE[address]
        except (KeyError, TypeError):
            addr = sendable(address)
        node = self._node
        if not node.running:
            raise BusNotRunning(NOT_RUNNING)
        if get_ident() != node.thread:  # cheap: get_running_loop() costs 0.2 us on 3.11
            check_loop(node)
        if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN and infinity
            raise ValueError(f"timeout must be a positive, finite number of seconds, at most {MAX_TIMEOUT:,}")
        hdrs = check_headers(headers) if headers else {}
        if response_type is None and isinstance(address, TypedAddress):
            response_type = address.__response_type__
        spec = None if response_type is None else spec_for(response_type)
        target = self._router.pick(addr) if to is None else self._target_on(addr, check_node(to))
        if target is None:
            self._counters.count("failures.no_handlers")
            raise self.no_handlers(addr, to)
        self._counters.requests += 1
        node_id = node.id
        pending = self._pending
        if isinstance(target, str):
            cid = node.next_id()
            t = now()
            if self._by_engine and to is None and not self._bus_routes(addr):
                target = ANY_NODE  # the engine picks it; nobody can say which node owes the reply
            future = pending.add(cid, timeout, target, spec, addr)
            env = make_envelope(kind="req", ns=node.namespace, addr=addr, id=cid, cid=cid, rto=node_id,
                                src=node_id, dst=target or None, dl=t + timeout, ts=t, hdr=hdrs)
            return cid, future, (target, env, body)
        direct = self.direct
        if target.direct and direct is not None:  # 3.12+: the handler may answer within this call
            answered = direct.call(target, body, timeout, spec, addr)
            if answered is not None:
                return direct.cid, answered, None
        cid = node.next_id()
        t = now()
        future = pending.add(cid, timeout, node_id, spec, addr)
        item: Item = (body, False, hdrs, cid, cid, node_id, node_id, t, t + timeout)
        if target.pattern:
            item = at(item, addr)
        if not target.deliver(item):
            if target.waits:
                self.blocked.append((target, item))  # the caller waits for room: wait_blocked()
                self.more = True
                return cid, future, None
            pending.discard(cid)
            self._counters.count("dropped.overflow")
            self._counters.count("failures.overflow")
            raise RecipientFailure(f"the consumer of {addr!r} is overloaded; the request was dropped",
                                   code=503, remote_type="Overloaded")
        return cid, future, None

    async def send_remote(self, remote: Remote, timeout: float,
                          future: asyncio.Future[Any]) -> asyncio.Semaphore | None:
        """Send a request's frame; return the window slot it holds, which the caller releases."""
        node, env, body = remote
        if node == ANY_NODE:
            try:
                # Within the request's own timeout: an engine that does not take the
                # frame must not hold the caller past its deadline.
                await self._wire.send_any(env, body, reply=env.cid, timeout=timeout)
            except DeliveryUnknown:
                pass  # it may have gone out: the reply or the deadline resolves the request
            except TransportError:
                if not future.done():
                    raise
            return None
        window = None
        limit = self._wire.max_in_flight
        if limit:
            window = self._windows.get(node)
            if window is None:
                window = self._windows[node] = asyncio.Semaphore(limit)
            if window.locked():
                began = now()
                try:
                    async with asyncio.timeout(timeout):
                        await window.acquire()
                except TimeoutError:
                    return None  # never sent; the request's own timer fails it
                timeout = max(timeout - (now() - began), 0.001)  # the send gets what is left
            else:
                await window.acquire()  # free: returns at once
        try:
            sent = await self._wire.unicast(node, env, body, timeout=timeout)
        except DeliveryUnknown:
            # The frame may have gone out, so a reply may still come: the request
            # resolves by that reply or by its own deadline, like any other.
            return window
        except TransportError:
            if window is not None:
                window.release()
            if future.done():
                # The request ended while its frame waited (deadline passed, node gone):
                # report that outcome, which the future holds, not the late send error.
                return None
            raise
        if not sent:
            self._node_gone(node, "its inbox has no listener")
        return window

    def undeliverable(self, cid: str) -> None:
        """The engine says no node took request ``cid``: fail it ``NoHandlers`` now, not at its deadline."""
        entry = self._pending.get(cid)
        if entry is not None and not entry.future.done():
            entry.future.set_exception(self.no_handlers(entry.address))

    async def send_ctl(self, op: str, body: dict[str, Any], to: str | None) -> int | bool | None:
        """Send a membership frame to one node, or to all (``to`` None)."""
        node = self._node
        env = Envelope(kind="ctl", ns=node.namespace, addr=op, id=node.next_id(), src=node.id, dst=to, ts=now())
        if to is None:
            return await self._wire.broadcast(env, body)
        return await self._wire.unicast(to, env, body)
