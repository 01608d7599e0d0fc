"""EventBus: composes the bus's parts; lifecycle, identity, stats and nodes."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._addresses import address_of
from ._core.direct import Direct
from ._core.inbound import Inbound
from ._core.intercept import Interceptors
from ._core.membership import LEFT, Membership
from ._core.node import Node
from ._core.outbound import Outbound
from ._core.registry import Registry
from ._core.requests import PendingRequests, Replies
from ._core.routing import Router
from ._core.startup import Startup
from ._core.watchdog import DEFAULT_BLOCKING_THRESHOLD, Watchdog, check_blocking_threshold
from ._counters import Counters
from ._env import ENV_URL, warn_unknown
from ._exceptions import BusStopped, ConfigError, RecipientGone
from ._loops import run as run_loop
from ._patterns import RESERVED
from ._ratelog import RateLimitedLog
from ._registering import Registering
from ._reporting import STATE_ADDRESS, Reporter, Watching
from ._sending import Sending
from ._signals import stop_on_signals
from ._wire.envelope import check_namespace
from ._wire.wire import Wire
from .transports.registry import make_transport, redact

if TYPE_CHECKING:
    from types import TracebackType

    from ._jobs import JobScheduler

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move
R = TypeVar("R")
DEFAULT_URL = "memory://"
CTL_OVERHEAD = 2048  # bytes a membership frame's envelope may take beside its body (a 128-character namespace)
BYE_GRACE = 0.05  # seconds the requests owed by a node that said bye wait for its last replies


class EventBus(Registering, Sending, Watching):
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
        start_timeout: how long ``start()`` retries a transport that cannot start
            (a broker not up yet); 0 for one attempt.
        blocking_threshold: seconds an ``async def`` handler may hold the event loop
            before a WARNING names it and ``stats()`` counts it (``stalls.*``); None: off.

    Raises:
        ConfigError: for a bad URL, namespace, key or option.
    """

    def __init__(self, url: str | None = None, *, namespace: str = "", shared_key: Any = None, max_queue: int = 1000,
                 concurrency: int = 64, heartbeat: float = 1.0, startup_wait: float = 0.25, stop_timeout: float = 5.0,
                 replay_ttl: float = 60.0, start_timeout: float = 30.0,
                 blocking_threshold: float | None = DEFAULT_BLOCKING_THRESHOLD) -> None:
        self.url = url or DEFAULT_URL
        node = self._node = Node(check_namespace(namespace))
        if max_queue < 1 or concurrency < 1:
            raise ConfigError("max_queue and concurrency must be at least 1")
        if not 0 < heartbeat <= 3600:
            raise ConfigError("heartbeat must be between 0 and 3600 seconds")
        self._transport = make_transport(self.url)
        self._startup = Startup(node, self._transport, start_timeout)
        wire = self._wire = Wire(self._transport, shared_key, replay_ttl)
        self._stop_timeout = stop_timeout
        counters = self._counters = Counters()
        ratelog = self._ratelog = RateLimitedLog(logger)
        pending = self._pending = PendingRequests()
        router = self._router = Router()
        self._watchdog = Watchdog(check_blocking_threshold(blocking_threshold), lambda: [
            (reg.address, reg.handler) for regs in router.local.values() for reg in regs], counters.count)
        self._out = Outbound(node, router, wire, pending, counters, self._node_gone)
        self._membership = Membership(router, self._out.send_ctl, self._node_gone, heartbeat=heartbeat,
                                      startup_wait=startup_wait, count=counters.count, interest=wire,
                                      budget=wire.body_budget(CTL_OVERHEAD), node_id=lambda: node.id)
        replies = Replies(node, pending, wire, counters, ratelog)
        # Starts handlers' runners, and local requests' handlers within the call (eagerly, 3.12+).
        direct = self._direct = self._out.direct = Direct(self._out, node, pending, replies, counters)
        hooks = self._hooks = Interceptors()
        self._outbound_hooks = hooks.outbound
        self._in = Registry(node, router, self._membership, replies, counters, ratelog, direct, hooks,
                            max_queue=max_queue, concurrency=concurrency)
        self._inbound = Inbound(node, wire, router, replies, self._membership, counters, ratelog)
        self._on_frame = self._inbound.on_frame
        # Every node answers a monitor's question at the system address (addrbus monitor).
        self._reporter = Reporter(self)
        self._in.register(STATE_ADDRESS, self._reporter.answer, True, None, 4, None, system=True)
        self._state_listeners: list[Callable[[str], Any]] = []
        self._scheduler: JobScheduler | None = None
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------

    def __repr__(self) -> str:
        ns = f" namespace={self.namespace!r}" if self.namespace else ""
        return f"<EventBus {redact(self.url)}{ns} node={self.node_id} {'running' if self.running else 'stopped'}>"

    @classmethod
    def from_env(cls, **options: Any) -> EventBus:
        """Build a bus from ``ADDRBUS_URL``, ``ADDRBUS_NAMESPACE`` and ``ADDRBUS_SHARED_KEY``.

        Without ``ADDRBUS_URL`` it is the ``addrbus`` command's default, host-local
        ``udp://239.255.0.1:5000``; any other ``ADDRBUS_*`` variable is logged as a WARNING.
        """
        warn_unknown()
        return cls(os.environ.get("ADDRBUS_URL") or ENV_URL, namespace=os.environ.get("ADDRBUS_NAMESPACE", ""),
                   shared_key=os.environ.get("ADDRBUS_SHARED_KEY") or None, **options)

    @property
    def namespace(self) -> str:
        """Return the namespace: buses in different namespaces never exchange a message."""
        return self._node.namespace

    @property
    def node_id(self) -> str:
        """Return this bus's node id (a new one at every ``start()``)."""
        return self._node.id

    @property
    def running(self) -> bool:
        """Tell whether the bus is started."""
        return self._node.running

    @property
    def transport_state(self) -> str:
        """Return the transport's state: connected, degraded, disconnected or reconnected."""
        return self._transport.state

    @property
    def transport_routes_sends(self) -> bool:
        """Tell whether the transport's engine picks the node of each send and request (NATS), not the bus."""
        return self._transport.routes_sends

    def on_transport_state(self, listener: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``listener(state)`` on every transport state change; return an undo function."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    async def start(self) -> None:
        """Connect the transport and learn who consumes what; idempotent.

        Returns only after the first exchange of membership state, so a message
        sent right after ``start()`` is routed to every node already running. A transport
        that cannot start is tried again, with backoff, for ``start_timeout`` seconds.

        Raises:
            TransportError: if the transport did not start within ``start_timeout``.
            BusStopped: if ``stop()`` was called while it retried.
            BusError: if the bus runs on another event loop.
        """
        async with self._startup.lock():  # start() and stop() take turns, on the bus's loop only
            if not self._node.running:
                await self._start()

    async def _start(self) -> None:
        node = self._node
        node.renew()  # a restarted bus is a new node to its peers
        node.loop = asyncio.get_running_loop()
        node.thread = threading.get_ident()
        self._pending.open(node.loop)
        self._out.forget()
        self._wire.reset()
        self._transport.on_state(self._transport_state_changed)
        self._transport.on_undeliverable(self._out.undeliverable)
        await self._startup.start(self._on_frame)
        node.running = node.answering = True
        self._watchdog.start()  # on the loop: its timer, and a thread that samples the loop's stack
        self._reporter.started()
        try:
            await self._membership.start(self._transport.needs_heartbeat, self._transport.knows_listeners)
        except BaseException:
            await self._stop()
            raise
        if self._scheduler is not None:
            await self._scheduler.start()
        logger.info("bus started: %s node %s", self._transport.describe(), node.id)

    async def stop(self) -> None:
        """Stop the bus: fail pending requests, let running handlers finish (bounded), disconnect.

        Messages already queued for local handlers are handled before it returns
        (within ``stop_timeout``). Idempotent; the bus can be started again. A ``start()``
        retrying its transport gives up (it raises ``BusStopped``) once its attempt ends.
        """
        if self._stopping:
            return  # stop() from a handler while the bus stops: that stop() is already ending it
        self._startup.abandon()
        async with self._startup.lock():
            if self._node.running:
                self._stopping = True
                try:
                    await self._stop()
                finally:
                    self._stopping = False

    async def _stop(self) -> None:
        node = self._node
        if self._scheduler is not None:
            await self._scheduler.stop()
        node.running = False
        self._pending.fail_all(BusStopped, "the bus was stopped")
        self._pending.close()
        self._in.wake_all()
        await self.drain(self._stop_timeout, cancel=True)
        node.answering = False
        await self._membership.stop()
        await self._transport.stop()
        self._watchdog.stop()
        self._startup.stopped()
        logger.info("bus stopped: node %s", node.id)

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def run(self, main: Callable[[], Coroutine[Any, Any, R]] | None = None, *, uvloop: bool = False) -> R | None:
        """Start the bus, run ``main()`` (or wait for SIGINT/SIGTERM), stop the bus.

        Blocks, like ``asyncio.run``; returns what ``main()`` returned. With
        ``uvloop=True`` it runs on uvloop (``pip install 'addrbus[speed]'``).

        Raises:
            BusError: if called where an event loop runs already (there, use ``async with bus:``).
            ConfigError: with ``uvloop=True`` if uvloop is not installed.
        """
        return run_loop(self._run(main), uvloop=uvloop)

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
        return await self._in.drain(timeout, cancel)

    # -- the bus's own reactions -----------------------------------------------------

    def _node_gone(self, node: str, why: str) -> None:
        self._router.remove_node(node)
        self._out.forget(node)
        fail = self._pending.fail_node
        if why == LEFT:  # its last replies may come by another path than its bye (UDP unicast): let them land
            asyncio.get_running_loop().call_later(BYE_GRACE, fail, node, RecipientGone, f"node {node} is gone ({why})")
        else:
            fail(node, RecipientGone, f"node {node} is gone ({why})")

    def _transport_state_changed(self, state: str) -> None:
        logger.info("transport %s: %s", self._transport.describe(), state)
        if state == "reconnected" and self.running:
            self._inbound.spawn(self._membership.reannounce())
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("transport state listener raised")

    # -- introspection -------------------------------------------------------------

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
        return await self._router.wait_for_count(address_of(address), count, exactly, timeout)

    def stats(self) -> dict[str, int]:
        """Return the bus's counters: sent, published, delivered, replies, frames.received, failures.*, dropped.*.

        ``frames.received`` counts every frame the transport handed to this bus,
        membership frames included: what routing costs this node.
        """
        result = self._counters.snapshot()
        result["pending_requests"] = len(self._pending)
        result.update({f"transport.{key}": value for key, value in self._transport.stats().items()})
        result.update({f"crypto.{key}": value for key, value in self._wire.stats().items()})
        return result

    def consumers(self) -> dict[str, int]:
        """Return every address consumed on the bus (as this node knows it) with how many handlers in all."""
        return _users(self._router.counts())

    def local_handlers(self) -> dict[str, int]:
        """Return the addresses this node consumes with how many handlers each (as :meth:`nodes` has them)."""
        return _users(self._router.by_address(self._router.local_counts()))

    def describe(self) -> str:
        """Return the transport's URL with every argument spelt out, and no password."""
        return self._wire.describe()

    def nodes(self) -> dict[str, dict[str, int]]:
        """Return every live node (this one included) with the addresses it consumes and how many handlers.

        A grouped handler counts under its address (or pattern), as in :meth:`consumers`.
        """
        merge = self._router.by_address
        return {node: _users(merge(counts)) for node, counts in
                {self._node.id: self._router.local_counts(), **self._membership.nodes}.items()}


def _users(counts: dict[str, int]) -> dict[str, int]:
    """Leave the bus's own addresses (and taps') out of a listing."""
    return {address: n for address, n in counts.items() if not address.startswith(RESERVED)}
