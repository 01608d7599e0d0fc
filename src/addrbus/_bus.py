"""EventBus: lifecycle, consumer/on/stream, send/publish/request."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._addresses import TypedAddress, address_of, has_control_chars
from ._codec import ANY_SPEC, BodyInvalid, BodySpec, FrameError, spec_for
from ._consumer import PASS_INLINE, Item, Registration, inspect_handler
from ._exceptions import (
    BusError,
    BusNotRunning,
    BusStopped,
    ConfigError,
    DeliveryUnknown,
    MessageTooLarge,
    NoHandlers,
    RecipientFailure,
    RecipientGone,
    ReplyError,
    TransportError,
)
from ._membership import Membership
from ._message import (
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    Envelope,
    Failure,
    Message,
    id_source,
    make_envelope,
    make_message,
    new_node_id,
    now,
)
from ._ratelog import RateLimitedLog
from ._replies import Pending, PendingRequests
from ._routing import Router
from ._signals import stop_on_signals
from ._urls import DEFAULT_URL, make_transport, redact
from ._wire import Wire

if TYPE_CHECKING:
    from types import TracebackType

    from ._endpoint import Endpoint
    from ._scheduler import Job, JobScheduler
    from ._stream import Stream

logger = logging.getLogger("addrbus")
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
Q = TypeVar("Q")

_FAILURES: dict[str, type[ReplyError]] = {
    "NO_HANDLERS": NoHandlers,
    "RECIPIENT_GONE": RecipientGone,
    "STOPPED": BusStopped,
}


class EventBus:
    """An address-based event bus: request/reply, send and publish over one transport.

    Args:
        url: where the bus lives: ``memory://`` (default, in-process),
            ``memory://NAME`` (buses on the same named hub are nodes of one bus),
            ``udp://GROUP:PORT`` or ``redis://HOST:PORT/DB``.
        namespace: buses in different namespaces never exchange a message.
        shared_key: a Fernet key (or several, the first encrypting) to seal
            every frame that leaves the process.
        max_queue: default backlog bound of each handler.
        concurrency: default number of suspended runs of one handler at once.
        heartbeat: seconds between membership heartbeats on network transports.
        stop_timeout: how long ``stop()`` waits for running handlers.

    Raises:
        ConfigError: for a bad URL, namespace, key or option.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "",
        shared_key: Any = None,
        max_queue: int = 1000,
        concurrency: int = 64,
        heartbeat: float = 1.0,
        startup_wait: float = 0.25,
        stop_timeout: float = 5.0,
        replay_ttl: float = 60.0,
    ) -> None:
        self.url = url or DEFAULT_URL
        self.namespace = _check_namespace(namespace)
        if max_queue < 1 or concurrency < 1:
            raise ConfigError("max_queue and concurrency must be at least 1")
        if not 0 < heartbeat <= 3600:
            raise ConfigError("heartbeat must be between 0 and 3600 seconds")
        self._transport = make_transport(self.url)
        self._wire = Wire(self._transport, shared_key, replay_ttl)
        self._max_queue = max_queue
        self._concurrency = concurrency
        self._stop_timeout = stop_timeout
        self._router = Router()
        self._router.on_change = self._routes_changed
        self._routes_event: asyncio.Event | None = None
        self._membership = Membership(
            self._router, self._send_ctl, self._node_gone, heartbeat=heartbeat, startup_wait=startup_wait
        )
        self._stats: dict[str, int] = {}
        # The per-message counters are attributes: a dict update costs more on the hot path.
        self._n_sent = self._n_published = self._n_requests = self._n_replies = self._n_delivered = 0
        self._ratelog = RateLimitedLog(logger)
        self._pending: PendingRequests | None = None
        self._running = False
        self._answering = False  # replies still go out while stop() lets handlers finish
        self.node_id = new_node_id()
        self._ids = id_source(self.node_id)
        self._state_listeners: list[Callable[[str], Any]] = []
        self._detached: list[Registration] = []  # unregistered, but still finishing work
        self._background: set[asyncio.Task[None]] = set()
        self._on_stop: set[Callable[[], None]] = set()  # wakes streams waiting for messages
        self._scheduler: JobScheduler | None = None
        self._windows: dict[str, asyncio.Semaphore] = {}  # node -> requests in flight to it (UDP)
        # addrbus.testing.Recorder: observer(kind, address, body, headers), kind publish/send/request.
        self._observers: list[Callable[[str, str, Any, dict[str, str]], None]] = []

    # -- lifecycle -----------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        ns = f" namespace={self.namespace!r}" if self.namespace else ""
        return f"<EventBus {redact(self.url)}{ns} node={self.node_id} {state}>"

    @classmethod
    def from_env(cls, **options: Any) -> EventBus:
        """Build a bus from ``ADDRBUS_URL``, ``ADDRBUS_NAMESPACE`` and ``ADDRBUS_SHARED_KEY``."""
        return cls(
            os.environ.get("ADDRBUS_URL") or None,
            namespace=os.environ.get("ADDRBUS_NAMESPACE", ""),
            shared_key=os.environ.get("ADDRBUS_SHARED_KEY") or None,
            **options,
        )

    @property
    def running(self) -> bool:
        """Tell whether the bus is started."""
        return self._running

    @property
    def transport_state(self) -> str:
        """Return the transport's state: connected, degraded, disconnected or reconnected."""
        return self._transport.state

    def on_transport_state(self, listener: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``listener(state)`` on every transport state change; return an undo function."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    def add_observer(self, observer: Callable[[str, str, Any, dict[str, str]], None]) -> Callable[[], None]:
        """Call ``observer(kind, address, body, headers)`` on each publish, send and request; return its remover.

        The bus calls it for every publish, send and request it makes (``kind``
        is ``"publish"``, ``"send"`` or ``"request"``), before delivery and
        whether or not anyone handles the message. An observer that raises is
        logged, never raised into the caller. ``addrbus.testing.Recorder`` is
        built on it.

        Args:
            observer: called synchronously with the address as a string and the body as given.

        Returns:
            A function that removes the observer; calling it again does nothing.
        """
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove

    async def start(self) -> None:
        """Connect the transport and learn who consumes what; idempotent.

        Returns only after the first exchange of membership state, so a message
        sent right after ``start()`` is routed to every node already running.

        Raises:
            TransportError: if the transport cannot start.
        """
        if self._running:
            return
        loop = asyncio.get_running_loop()
        self.node_id = new_node_id()  # a restarted bus is a new node to its peers
        self._ids = id_source(self.node_id)
        self._pending = PendingRequests(loop)
        self._windows.clear()
        self._wire.reset()
        self._transport.on_state(self._transport_state_changed)
        await self._transport.start(self.node_id, self.namespace, self._on_frame)
        self._running = self._answering = True
        try:
            await self._membership.start(self._transport.needs_heartbeat)
        except BaseException:
            await self.stop()
            raise
        if self._scheduler is not None:
            await self._scheduler.start()
        logger.info("bus started: %s node %s", self._transport.describe(), self.node_id)

    async def stop(self) -> None:
        """Stop the bus: fail pending requests, let running handlers finish (bounded), disconnect.

        Messages already queued for local handlers are handled before it returns
        (within ``stop_timeout``). Idempotent; the bus can be started again.
        """
        if not self._running:
            return
        if self._scheduler is not None:
            await self._scheduler.stop()
        self._running = False
        pending = self._pending
        if pending is not None:
            pending.fail_all(BusStopped, "the bus was stopped")
            pending.close()
        for wake in list(self._on_stop):
            wake()
        await self.drain(self._stop_timeout, cancel=True)
        self._answering = False
        await self._membership.stop()
        await self._transport.stop()
        logger.info("bus stopped: node %s", self.node_id)

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def run(self, main: Callable[[], Coroutine[Any, Any, R]] | None = None) -> R | None:
        """Start the bus, run ``main()`` (or wait for SIGINT/SIGTERM), stop the bus.

        Blocks, like ``asyncio.run``; returns what ``main()`` returned.
        """
        return asyncio.run(self._run(main))

    async def _run(self, main: Callable[[], Coroutine[Any, Any, R]] | None) -> R | None:
        async with self:
            if main is not None:
                return await main()
            stopped = asyncio.Event()
            with stop_on_signals(stopped):
                await stopped.wait()
            return None

    async def drain(self, timeout: float | None = None, *, cancel: bool = False) -> bool:
        """Wait until every message already handed to local handlers has been handled.

        Returns False if ``timeout`` passed first (then, with ``cancel``, the
        handlers still running are cancelled).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # Called from inside a handler, it must not wait for its own run.
        me = asyncio.current_task()
        while True:
            tasks = {t for regs in self._router.local.values() for r in regs for t in r._tasks}
            tasks.update(t for r in self._detached for t in r._tasks)
            tasks.discard(me)
            self._detached = [r for r in self._detached if r._tasks]
            if not tasks:
                return True
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                if cancel:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                return False
            await asyncio.wait(tasks, timeout=left)

    # -- registration --------------------------------------------------------------

    def _register(
        self, address: Any, handler: Callable[..., Any], body_default: bool, max_queue: int | None,
        concurrency: int | None, localns: dict[str, Any] | None, sink: BodySpec | None = None,
    ) -> Registration:
        """Register ``handler``; a ``sink`` (a stream) takes each Message inline, typed by that spec."""
        addr = address_of(address)
        if self._running:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                # Peers must hear of the new handler, which takes the bus's loop.
                raise BusError("register handlers on a running bus from a coroutine on its event loop") from None
        if sink is not None:
            pass_mode, spec = PASS_INLINE, sink
        else:
            pass_mode, spec = inspect_handler(handler, body_default, localns)
        reg = Registration(
            self, addr, handler, pass_mode=pass_mode, spec=spec,
            max_queue=max_queue or self._max_queue, concurrency=concurrency or self._concurrency,
        )
        self._router.add_local(reg)
        self._membership.changed()
        return reg

    def _unregister(self, reg: Registration) -> None:
        self._router.remove_local(reg)
        if reg._tasks:
            self._detached = [*self._detached, reg]
        self._membership.changed()

    @overload
    def consumer(self, address: Any, handler: None = None, *, max_queue: int | None = None,
                 concurrency: int | None = None) -> Callable[[F], F]: ...
    @overload
    def consumer(self, address: Any, handler: Callable[..., Any], *, max_queue: int | None = None,
                 concurrency: int | None = None) -> Registration: ...

    def consumer(self, address: Any, handler: Callable[..., Any] | None = None, *, max_queue: int | None = None,
                 concurrency: int | None = None) -> Callable[[F], F] | Registration:
        """Register a handler at ``address``; it receives the ``Message`` (or what its annotation asks).

        Used as ``bus.consumer(address, handler)`` it returns the
        :class:`Registration`; as ``@bus.consumer(address)`` it returns the
        function unchanged (its registration is ``fn.registration``).
        The handler's return value is the reply to a request.

        Raises:
            ValueError: for a bad address.
            ConfigError: for a handler that cannot be called with one message.
        """
        localns = sys._getframe(1).f_locals
        return self._add(address, handler, False, max_queue, concurrency, localns)

    @overload
    def on(self, address: Any, handler: None = None, *, max_queue: int | None = None,
           concurrency: int | None = None) -> Callable[[F], F]: ...
    @overload
    def on(self, address: Any, handler: Callable[..., Any], *, max_queue: int | None = None,
           concurrency: int | None = None) -> Registration: ...

    def on(self, address: Any, handler: Callable[..., Any] | None = None, *, max_queue: int | None = None,
           concurrency: int | None = None) -> Callable[[F], F] | Registration:
        """Register a handler at ``address`` that receives the body, typed by its annotation.

        As :meth:`consumer`, but an unannotated parameter gets the body, not the Message.
        """
        localns = sys._getframe(1).f_locals
        return self._add(address, handler, True, max_queue, concurrency, localns)

    def _add(self, address: Any, handler: Callable[..., Any] | None, body_default: bool, max_queue: int | None,
             concurrency: int | None, localns: dict[str, Any]) -> Callable[[F], F] | Registration:
        if handler is not None:
            return self._register(address, handler, body_default, max_queue, concurrency, localns)
        address_of(address)  # fail at the decorator line, not later

        def decorate(fn: F) -> F:
            reg = self._register(address, fn, body_default, max_queue, concurrency, localns)
            try:
                fn.registration = reg  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return fn

        return decorate

    def stream(self, address: Any, body_type: Any = None, *, max_queue: int | None = None) -> Stream:
        """Return an async iterator of the messages at ``address``; unregisters when left.

        Use as ``async with bus.stream(a) as messages: async for msg in messages``
        or just ``async for msg in bus.stream(a)``.
        """
        from ._stream import Stream

        return Stream(self, address_of(address), body_type, max_queue or self._max_queue)

    # -- scheduling ----------------------------------------------------------------

    @overload
    def schedule(self, trigger: Any, fn: None = None, *, name: str | None = None,
                 singleton: bool = False) -> Callable[[F], F]: ...
    @overload
    def schedule(self, trigger: Any, fn: Callable[..., Any], *, name: str | None = None,
                 singleton: bool = False) -> Job: ...

    def schedule(self, trigger: Any, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                 singleton: bool = False) -> Callable[[F], F] | Job:
        """Run ``fn`` on ``trigger`` (``every(10).minutes``, ``cron("*/5 * * * *")``, ``at(when)``).

        Used as ``@bus.schedule(trigger)`` it returns the function unchanged
        (its job is ``fn.job``); as ``bus.schedule(trigger, fn)`` it returns the
        :class:`Job`. Jobs start and stop with the bus. With ``singleton=True``
        one node among all that registered the job runs each occurrence.

        Raises:
            ConfigError: for a bad trigger, or if APScheduler is not installed.
        """
        added: Callable[[F], F] | Job = self._jobs().add(trigger, fn, name=name, singleton=singleton)
        return added

    def jobs(self) -> list[Job]:
        """Return the scheduled jobs, with their next run times."""
        return [] if self._scheduler is None else self._scheduler.jobs()

    def _jobs(self) -> JobScheduler:
        if self._scheduler is None:
            from ._scheduler import JobScheduler

            self._scheduler = JobScheduler(self)
        return self._scheduler

    # -- sending -------------------------------------------------------------------

    def _check_running(self) -> PendingRequests:
        if not self._running or self._pending is None:
            raise BusNotRunning("the bus is not running: use 'async with bus:' or 'await bus.start()' first")
        return self._pending

    def _notify(self, kind: str, address: str, body: Any, headers: dict[str, str]) -> None:
        for observer in list(self._observers):
            try:
                observer(kind, address, body, headers)
            except Exception:
                logger.exception("bus observer %r raised", observer)

    def _count(self, key: str) -> None:
        stats = self._stats
        stats[key] = stats.get(key, 0) + 1

    async def publish(self, address: Any, body: Any = None, *, headers: dict[str, str] | None = None) -> None:
        """Deliver ``body`` to every handler at ``address`` on every node.

        Returns once the message is handed to local handlers' queues and to the
        transport; never waits for a handler.

        Raises:
            ValueError: for a bad address.
            MessageTooLarge: if the message is larger than the transport carries.
            TransportError: if the transport could not take it.
        """
        addr = address_of(address)
        self._check_running()
        hdrs = _check_headers(headers)
        if self._observers:
            self._notify("publish", addr, body, hdrs)
        msg_id = self._ids()
        ts = now()
        self._n_published += 1
        regs = self._router.local.get(addr)
        if regs:
            item = (body, False, hdrs, msg_id, None, None, self.node_id, ts, None)
            for reg in regs:
                if not reg.deliver(item):
                    self._count("dropped.overflow")
        if addr in self._router.remote:
            env = make_envelope(kind="pub", ns=self.namespace, addr=addr, id=msg_id, src=self.node_id, ts=ts,
                                hdr=hdrs)
            await self._wire.broadcast(env, body)

    async def send(self, address: Any, body: Any = None, *, headers: dict[str, str] | None = None) -> None:
        """Deliver ``body`` to exactly one handler at ``address`` in the whole bus, round-robin.

        Raises:
            ValueError: for a bad address.
            NoHandlers: if nobody consumes ``address``.
            MessageTooLarge: if the message is larger than the transport carries.
            TransportError: if the transport could not take it.
        """
        addr = address_of(address)
        self._check_running()
        hdrs = _check_headers(headers)
        if self._observers:
            self._notify("send", addr, body, hdrs)
        target = self._router.pick(addr)
        if target is None:
            self._count("failures.no_handlers")
            raise NoHandlers(f"no handlers for address {addr!r}", code=-1)
        self._n_sent += 1
        msg_id = self._ids()
        if isinstance(target, str):
            env = make_envelope(kind="send", ns=self.namespace, addr=addr, id=msg_id, src=self.node_id,
                                dst=target, ts=now(), hdr=hdrs)
            if not await self._wire.unicast(target, env, body):
                self._node_gone(target, "its inbox has no listener")
                raise RecipientGone(f"the node consuming {addr!r} is gone")
        elif not target.deliver((body, False, hdrs, msg_id, None, None, self.node_id, now(), None)):
            self._count("dropped.overflow")

    @overload
    async def request(self, address: Endpoint[None, R], body: None = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, response_type: None = None) -> R: ...
    @overload
    async def request(self, address: Endpoint[Q, R], body: Q, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, response_type: None = None) -> R: ...
    @overload
    async def request(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, response_type: type[R]) -> R: ...
    @overload
    async def request(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, response_type: Any = None) -> Any: ...

    async def request(self, address: Any, body: Any = None, *, timeout: float = 30.0,
                      headers: dict[str, str] | None = None, response_type: Any = None) -> Any:
        """Send a request to one handler at ``address`` and return the reply's body.

        Args:
            address: a ``str``, ``str`` Enum or :class:`Endpoint`.
            body: the request body (a model, a builtin, anything JSON-shaped).
            timeout: seconds to wait for the reply (default 30, as Vert.x).
            headers: string headers that travel with the message.
            response_type: validate the reply as this type.

        Raises:
            NoHandlers: if nobody consumes ``address``.
            RequestTimeout: if no reply arrives in time (also a ``TimeoutError``).
            RecipientFailure: if the handler raised, failed the message or
                rejected the body.
            RecipientGone: if the node owing the reply left the bus.
            BusStopped: if this bus stopped while waiting.
        """
        cid, future, remote = self._submit(address, body, timeout, headers, response_type)
        window = None
        try:
            if remote is not None:
                window = await self._send_remote(remote, timeout, future)
            return (await future)[0]
        except ReplyError as exc:
            self._count(f"failures.{exc.failure_type.value.lower()}")
            raise
        finally:
            self._pending.discard(cid)  # type: ignore[union-attr]
            if window is not None:
                window.release()

    @overload
    async def request_message(self, address: Endpoint[None, R], body: None = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, response_type: None = None) -> Message[R]: ...
    @overload
    async def request_message(self, address: Endpoint[Q, R], body: Q, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, response_type: None = None) -> Message[R]: ...
    @overload
    async def request_message(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, response_type: type[R]) -> Message[R]: ...
    @overload
    async def request_message(self, address: str | Enum, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, response_type: Any = None) -> Message[Any]: ...

    async def request_message(self, address: Any, body: Any = None, *, timeout: float = 30.0,
                              headers: dict[str, str] | None = None, response_type: Any = None) -> Message[Any]:
        """Send a request as :meth:`request` does, and return the whole reply ``Message``."""
        # The same steps as request(), written out again: request() is one coroutine
        # on purpose: an inner coroutine shared by both is one more frame per local round trip.
        cid, future, remote = self._submit(address, body, timeout, headers, response_type)
        window = None
        try:
            if remote is not None:
                window = await self._send_remote(remote, timeout, future)
            body_, hdrs, msg_id, sender, ts = await future
        except ReplyError as exc:
            self._count(f"failures.{exc.failure_type.value.lower()}")
            raise
        finally:
            self._pending.discard(cid)  # type: ignore[union-attr]
            if window is not None:
                window.release()
        return make_message(body_, address_of(address), hdrs or {}, msg_id or self._ids(), cid, None, sender,
                            ts or now(), None)

    def _submit(self, address: Any, body: Any, timeout: float, headers: dict[str, str] | None,
                response_type: Any) -> tuple[str, asyncio.Future[Any], tuple[str, Envelope, Any] | None]:
        """Register a request and hand it to a local handler, or prepare it for a remote one.

        A plain function, not a coroutine: it is on the hot path of every request.
        """
        addr = address_of(address)
        pending = self._pending
        if not self._running or pending is None:
            raise BusNotRunning("the bus is not running: use 'async with bus:' or 'await bus.start()' first")
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        hdrs = _check_headers(headers) if headers else {}
        if self._observers:
            self._notify("request", addr, body, hdrs)
        if response_type is None and isinstance(address, TypedAddress):
            response_type = address.__response_type__
        spec = None if response_type is None else spec_for(response_type)
        target = self._router.pick(addr)
        if target is None:
            self._count("failures.no_handlers")
            raise NoHandlers(f"no handlers for address {addr!r}", code=-1)
        self._n_requests += 1
        cid = self._ids()
        node_id = self.node_id
        t = now()
        if isinstance(target, str):
            future = pending.add(cid, timeout, target, spec, addr)
            env = make_envelope(kind="req", ns=self.namespace, addr=addr, id=cid, cid=cid, rto=node_id,
                                src=node_id, dst=target, dl=t + timeout, ts=t, hdr=hdrs)
            return cid, future, (target, env, body)
        future = pending.add(cid, timeout, node_id, spec, addr)
        if not target.deliver((body, False, hdrs, cid, cid, node_id, node_id, t, t + timeout)):
            pending.discard(cid)
            self._count("dropped.overflow")
            self._count("failures.overflow")
            raise RecipientFailure(f"the consumer of {addr!r} is overloaded; the request was dropped",
                                   code=503, remote_type="Overloaded")
        return cid, future, None

    async def _send_remote(self, remote: tuple[str, Envelope, Any], timeout: float,
                           future: asyncio.Future[Any]) -> asyncio.Semaphore | None:
        """Send a request's frame; return the window slot it holds, which the caller releases."""
        node, env, body = remote
        window = None
        limit = self._transport.max_in_flight
        if limit:
            window = self._windows.get(node)
            if window is None:
                window = self._windows[node] = asyncio.Semaphore(limit)
            if window.locked():
                try:
                    async with asyncio.timeout(timeout):
                        await window.acquire()
                except TimeoutError:
                    return None  # never sent; the request's own timer fails it
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

    async def _answer(self, cid: str, reply_to: str | None, kind: str, body: Any, code: int, message: str,
                      remote_type: str, headers: dict[str, str] | None = None) -> None:
        """Answer a request: resolve it here, or send the answer to the requesting node."""
        failure_type = remote_type if remote_type in _FAILURES else "RECIPIENT_FAILURE"
        hdrs = _check_headers(headers) if headers else {}
        if reply_to == self.node_id:
            self._resolve(cid, kind, body, False, hdrs, self.node_id, code, message, remote_type, failure_type)
            return
        if reply_to is None or not self._answering:
            return
        env = make_envelope(kind="reply" if kind == "reply" else "fail", ns=self.namespace, id=self._ids(),
                            cid=cid, src=self.node_id, dst=reply_to, ts=now(), hdr=hdrs)
        if kind != "reply":
            env.err = Failure(type=failure_type, code=code, message=message, remote_type=remote_type)
            body = None
        try:
            await self._wire.unicast(reply_to, env, body)
        except MessageTooLarge as exc:
            await self._answer(cid, reply_to, "fail", None, 413, str(exc), "MessageTooLarge")
        except TypeError as exc:
            await self._answer(cid, reply_to, "fail", None, 500, str(exc), "TypeError")
        except TransportError:
            self._ratelog.warning("reply_lost", "a reply could not be sent; its requester will time out")
        else:
            self._n_replies += 1

    def _resolve_local(self, cid: str, body: Any) -> None:
        """Resolve a request answered by a handler of this very bus (the hot path of local requests)."""
        pending = self._pending
        entry = None if pending is None else pending._entries.get(cid)
        if entry is None or entry.future.done():
            self._count("dropped.late_reply")
            return
        if entry.spec is not None:
            body = _reply_body(entry, body, False)
            if body is _INVALID:
                return
        self._n_replies += 1
        entry.future.set_result((body, None, "", self.node_id, 0.0))

    def _resolve(self, cid: str, kind: str, body: Any, is_json: bool, headers: dict[str, str], sender: str,
                 code: int, message: str, remote_type: str, failure_type: str, msg_id: str = "") -> None:
        pending = self._pending
        entry = None if pending is None else pending.get(cid)
        if entry is None:
            self._count("dropped.late_reply")
            return
        if kind == "reply":
            body = _reply_body(entry, body, is_json)
            if body is _INVALID:
                return
            if sender == self.node_id:
                self._n_replies += 1
            entry.future.set_result((body, headers, msg_id, sender, now()))
            return
        error = _FAILURES.get(failure_type)
        if error is not None:
            entry.future.set_exception(error(message, code=code))
        else:
            entry.future.set_exception(RecipientFailure(message, code=code, remote_type=remote_type))

    # -- receiving -----------------------------------------------------------------

    def _on_frame(self, frame: Any) -> None:
        """Handle one frame from the transport; never raises."""
        try:
            env, body, is_json = self._wire.open(frame)
            if env.ns != self.namespace:
                raise FrameError("other_namespace")
            if env.dst is not None and env.dst != self.node_id:
                raise FrameError("not_for_us")
            if self._wire.seen_before(env.id):
                raise FrameError("duplicate")
            self._dispatch(env, body, is_json)
        except FrameError as exc:
            self._count(f"dropped.{exc.reason}")
            self._ratelog.warning(exc.reason, "dropped a received frame: %s", exc.reason)
        except Exception as exc:
            self._count("dropped.bad_frame")
            self._ratelog.warning("bad_frame", "dropped a received frame: %s", type(exc).__name__)

    def _dispatch(self, env: Envelope, body: Any, is_json: bool) -> None:
        kind = env.kind
        if kind in ("reply", "fail"):
            if env.cid is None:
                raise FrameError("bad_envelope")
            if kind == "fail":
                err = env.err or Failure(type="RECIPIENT_FAILURE")
                self._resolve(env.cid, "fail", None, False, env.hdr, env.src, err.code, err.message, err.remote_type,
                              err.type)
            else:
                self._resolve(env.cid, "reply", body, is_json, env.hdr, env.src, 0, "", "", "", env.id)
            return
        if kind == "ctl":
            if is_json:
                body = spec_for(Any).from_json(body)
            self._membership.on_ctl(env.addr, env.src, body)
            return
        addr = env.addr  # valid: Wire.open checked it (check_envelope)
        if kind == "pub":
            item: Item = (body, is_json, env.hdr, env.id, None, None, env.src, env.ts, None)
            for reg in self._router.local.get(addr, ()):
                if not reg.deliver(item):
                    self._count("dropped.overflow")
            return
        target = self._router.pick_local(addr)
        cid = env.cid if kind == "req" else None
        if target is None:
            self._count("dropped.no_handlers")
            if cid is not None:
                self._spawn(self._answer(cid, env.rto, "fail", None, -1, f"no handlers for address {addr!r}",
                                         "NO_HANDLERS"))
            return
        item = (body, is_json, env.hdr, env.id, cid, env.rto, env.src, env.ts, env.dl)
        if not target.deliver(item):
            self._count("dropped.overflow")
            if cid is not None:
                self._spawn(self._answer(cid, env.rto, "fail", None, 503,
                                         f"the consumer of {addr!r} is overloaded; the request was dropped",
                                         "Overloaded"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_ctl(self, op: str, body: dict[str, Any], node: str | None) -> int | bool | None:
        env = Envelope(kind="ctl", ns=self.namespace, addr=op, id=self._ids(), src=self.node_id, dst=node, ts=now())
        if node is None:
            return await self._wire.broadcast(env, body)
        return await self._wire.unicast(node, env, body)

    def _node_gone(self, node: str, why: str) -> None:
        self._router.remove_node(node)
        self._windows.pop(node, None)
        if self._pending is not None:
            self._pending.fail_node(node, RecipientGone, f"node {node} is gone ({why})")

    def _transport_state_changed(self, state: str) -> None:
        logger.info("transport %s: %s", self._transport.describe(), state)
        if state == "reconnected" and self._running:
            self._spawn(self._membership.reannounce())
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("transport state listener raised")

    # -- introspection -------------------------------------------------------------

    def _routes_changed(self) -> None:
        event = self._routes_event
        if event is not None:
            self._routes_event = None
            event.set()

    async def wait_for_handlers(self, address: Any, count: int = 1, *, exactly: bool = False,
                                timeout: float = 10.0) -> int:
        """Wait until ``count`` handlers (or more; with ``exactly``, just ``count``) consume ``address``.

        Counts handlers on every node this bus knows, itself included. Useful
        for a service that must not start before its dependencies, and for
        tests (instead of sleeping).

        Returns:
            The number of handlers.

        Raises:
            TimeoutError: if that was not reached within ``timeout`` seconds.
        """
        addr = address_of(address)
        async with asyncio.timeout(timeout):
            while True:
                found = self._router.count(addr)
                if found == count if exactly else found >= count:
                    return found
                if self._routes_event is None:
                    self._routes_event = asyncio.Event()
                await self._routes_event.wait()

    def stats(self) -> dict[str, int]:
        """Return the bus's counters: sent, published, delivered, replies, failures.*, dropped.*."""
        result = {
            "sent": self._n_sent,
            "published": self._n_published,
            "requests": self._n_requests,
            "delivered": self._n_delivered,
            "replies": self._n_replies,
        }
        result.update(self._stats)
        result["pending_requests"] = len(self._pending) if self._pending is not None else 0
        for key, value in self._transport.stats().items():
            result[f"transport.{key}"] = value
        for key, value in self._wire.stats().items():
            result[f"crypto.{key}"] = value
        return result

    def nodes(self) -> dict[str, dict[str, int]]:
        """Return every live node (this one included) with the addresses it consumes and how many handlers."""
        result = {self.node_id: self._router.local_counts()}
        result.update(self._membership.nodes)
        return result


_INVALID = object()  # _reply_body's answer for a reply that failed validation


def _reply_body(entry: Pending, body: Any, is_json: bool) -> Any:
    """Return the reply's body as its requester asked for it, or fail the request and return ``_INVALID``."""
    spec = entry.spec
    try:
        if spec is not None:
            return spec.from_json(body) if is_json else spec.from_python(body)
        return ANY_SPEC.from_json(body) if is_json else body
    except BodyInvalid as exc:
        entry.future.set_exception(
            RecipientFailure(f"the reply did not validate: {exc}", code=502, remote_type="InvalidReply")
        )
        return _INVALID


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str):
        raise ConfigError("namespace must be a string")
    if len(namespace) > 128 or has_control_chars(namespace):
        raise ConfigError("namespace must be at most 128 printable characters")
    return namespace


def _check_headers(headers: dict[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers are allowed")
    size = 0
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("header names and values must be strings")
        size += len(key) + len(value)
    if size > MAX_HEADER_CHARS:
        raise ValueError(f"headers must total at most {MAX_HEADER_CHARS} characters")
    return dict(headers)
