"""The bus's way out as users call it: publish, send, request and request_message.

A part of :class:`~addrbus.EventBus` with no state of its own: the bus composes
the objects these methods use (the outbound router, the wire, pending requests).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._addresses import address_of
from ._core.checks import sendable
from ._core.direct import ANSWERED
from ._core.intercept import Interceptors, Outgoing
from ._exceptions import ReplyError
from ._ids import now
from ._message import Message, make_message
from ._patterns import TAP_HEADER, TAP_PREFIX
from ._wire.envelope import check_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ._core.direct import Direct
    from ._core.node import Node
    from ._core.outbound import Outbound
    from ._core.requests import PendingRequests
    from ._core.routing import Router
    from ._counters import Counters
    from ._endpoint import Endpoint
    from ._ratelog import RateLimitedLog
    from ._wire.wire import Wire

R = TypeVar("R")
Q = TypeVar("Q")


class Intercepted(dict[str, str]):
    """The headers of a call the interceptors have seen: the call goes its plain way from there."""

    __slots__ = ()


class Sending:
    """Publish, send and request: the sending methods of :class:`~addrbus.EventBus`."""

    _node: Node
    _out: Outbound
    _direct: Direct
    _wire: Wire
    _pending: PendingRequests
    _counters: Counters
    _hooks: Interceptors
    _router: Router
    _ratelog: RateLimitedLog
    #: The interceptors' outbound hooks (``_hooks.outbound``): empty, the calls take their plain way.
    _outbound_hooks: list[Any]

    async def _intercepted(self, kind: str, call: Callable[..., Coroutine[Any, Any, Any]], address: Any, body: Any,
                           headers: dict[str, str] | None, node: str | None, **options: Any) -> Any:
        """Run the outbound hooks, then ``call`` itself with the headers they made, then their finishers."""
        outgoing = Outgoing(kind, sendable(address), body, Intercepted(check_headers(headers)), node)
        started = Interceptors.run(self._outbound_hooks, outgoing)
        try:
            result = await call(address, body, headers=Intercepted(outgoing.headers), node=node, **options)
        except BaseException as exc:
            Interceptors.finish(started, exc)
            raise
        Interceptors.finish(started, None, result)
        return result

    async def _tap(self, kind: str, address: Any, body: Any, headers: dict[str, str] | None) -> None:
        """Publish a copy of a call for the taps of its address (``stream(a, tap=True)``), if any; never raise."""
        addr = sendable(address)  # a bad address raises here as the call itself would
        key = TAP_PREFIX + addr
        if addr.startswith(TAP_PREFIX) or not self._router.count(key):
            return
        try:
            # Intercepted: the copy is no call of the user's, for interceptors to see.
            await Sending.publish(self, key, body, headers=Intercepted({**(headers or {}), TAP_HEADER: kind}))
        except Exception as exc:  # a copy must never fail the call it copies
            self._counters.count("dropped.tap")
            self._ratelog.warning("tap", "a copy of a %s to %r for its taps was not sent: %s", kind, addr, exc)

    async def publish(self, address: Any, body: Any = None, *, headers: dict[str, str] | None = None,
                      require_handlers: bool = False, node: str | None = None) -> None:
        """Deliver ``body`` to every handler at ``address`` on every node (with ``node``, on that node only).

        Returns once the message is handed to local handlers' queues and to the
        transport; never waits for a handler. Nobody listening is no error,
        unless ``require_handlers`` is true or ``node`` is given.

        Raises:
            ValueError: for a bad address, or a ``node`` that is not a node id.
            NoHandlers: with ``require_handlers``, if no handler on the bus (as this node knows it) consumes it;
                with ``node``, if that node does not consume it.
            MessageTooLarge: if the message is larger than the transport carries.
            TransportError: if the transport could not take it.
        """
        if self._outbound_hooks and type(headers) is not Intercepted:
            await self._intercepted("publish", self.publish, address, body, headers, node,
                                    require_handlers=require_handlers)
            return
        if self._router.taps:
            await self._tap("publish", address, body, headers)
        out = self._out
        env = out.publish(address, body, headers, require_handlers, node)
        # A full local backlog to wait for (overflow "wait"), or copies for pattern
        # consumers' nodes and groups' picks: this call's, taken before it awaits.
        held = out.take() if out.more else None
        if env is not None:
            if env.dst is None:
                await self._wire.publish(env, body)
            else:
                await self._wire.unicast(env.dst, env, body)
        if held is not None:
            await out.finish_publish(held, body)

    async def send(self, address: Any, body: Any = None, *, headers: dict[str, str] | None = None,
                   node: str | None = None) -> None:
        """Deliver ``body`` to exactly one handler at ``address`` in the whole bus, round-robin.

        With ``node`` (a node id, as ``bus.node_id``), to one handler on that node.

        Raises:
            ValueError: for a bad address, or a ``node`` that is not a node id.
            NoHandlers: if nobody consumes ``address`` (on ``node``, if given).
            MessageTooLarge: if the message is larger than the transport carries.
            TransportError: if the transport could not take it.
        """
        if self._outbound_hooks and type(headers) is not Intercepted:
            await self._intercepted("send", self.send, address, body, headers, node)
            return
        if self._router.taps:
            await self._tap("send", address, body, headers)
        await self._out.send(address, body, headers, node)

    @overload
    async def request(self, address: Endpoint[None, R], body: None = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, node: str | None = None,
                      response_type: None = None) -> R: ...
    @overload
    async def request(self, address: Endpoint[Q, R], body: Q, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, node: str | None = None,
                      response_type: None = None) -> R: ...
    @overload
    async def request(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, node: str | None = None,
                      response_type: type[R]) -> R: ...
    @overload
    async def request(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, node: str | None = None,
                      response_type: Any = None) -> Any: ...

    async def request(self, address: Any, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, node: str | None = None,
                      response_type: Any = None) -> Any:
        """Send a request to one handler at ``address`` and return the reply's body.

        Args:
            address: a ``str``, ``str`` Enum or :class:`Endpoint`.
            body: the request body (a model, a builtin, anything JSON-shaped).
            timeout: seconds to wait for the reply (default 30, as Vert.x).
            headers: string headers that travel with the message.
            node: only a handler on this node (a node id, as ``bus.node_id``).
            response_type: validate the reply as this type.

        Raises:
            NoHandlers: if nobody consumes ``address`` (on ``node``, if given).
            RequestTimeout: if no reply arrives in time (also a ``TimeoutError``).
            RecipientFailure: if the handler raised, failed the message or rejected the body.
            RecipientGone: if the node owing the reply left the bus.
            BusStopped: if this bus stopped while waiting.
        """
        # One coroutine on purpose: an inner coroutine shared with request_message()
        # would be one more frame per local round trip.
        if self._outbound_hooks and type(headers) is not Intercepted:
            return await self._intercepted("request", self.request, address, body, headers, node,
                                           timeout=timeout, response_type=response_type)
        if self._router.taps:
            await self._tap("request", address, body, headers)
        out = self._out
        cid, future, remote = out.submit(address, body, timeout, headers, response_type, node)
        if future is ANSWERED:  # its handler here answered within the call (Python 3.12+)
            return self._direct.outcome()[0]
        window = None
        try:
            if remote is not None:
                window = await out.send_remote(remote, timeout, future)
            elif out.more:
                await out.wait_blocked()
            return (await future)[0]
        except ReplyError as exc:
            self._counters.count(f"failures.{exc.failure_type.value.lower()}")
            raise
        finally:
            self._pending.discard(cid)
            if window is not None:
                window.release()

    @overload
    async def request_message(self, address: Endpoint[None, R], body: None = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, node: str | None = None,
                              response_type: None = None) -> Message[R]: ...
    @overload
    async def request_message(self, address: Endpoint[Q, R], body: Q, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, node: str | None = None,
                              response_type: None = None) -> Message[R]: ...
    @overload
    async def request_message(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, node: str | None = None,
                              response_type: type[R]) -> Message[R]: ...
    @overload
    async def request_message(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, node: str | None = None,
                              response_type: Any = None) -> Message[Any]: ...

    async def request_message(self, address: Any, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, node: str | None = None,
                              response_type: Any = None) -> Message[Any]:
        """Send a request as :meth:`request` does, and return the whole reply ``Message``."""
        if self._outbound_hooks and type(headers) is not Intercepted:
            return await self._intercepted(  # type: ignore[no-any-return]
                "request", self.request_message, address, body, headers, node, timeout=timeout,
                response_type=response_type)
        if self._router.taps:
            await self._tap("request", address, body, headers)
        out = self._out
        cid, future, remote = out.submit(address, body, timeout, headers, response_type, node)
        if future is ANSWERED:  # its handler here answered within the call (Python 3.12+)
            body_, hdrs, msg_id, sender, ts = self._direct.outcome()
        else:
            window = None
            try:
                if remote is not None:
                    window = await out.send_remote(remote, timeout, future)
                elif out.more:
                    await out.wait_blocked()
                body_, hdrs, msg_id, sender, ts = await future
            except ReplyError as exc:
                self._counters.count(f"failures.{exc.failure_type.value.lower()}")
                raise
            finally:
                self._pending.discard(cid)
                if window is not None:
                    window.release()
        return make_message(body_, address_of(address), hdrs or {}, msg_id or self._node.next_id(),
                            cid or self._node.next_id(), None, sender,
                            ts or now(), None)
