"""The autobus ``Client``: subscribe, publish and schedule on one bus of its own.

``publish()`` never needs ``await``: events wait in a FIFO outbox, which one
task per client hands to the bus in order. ``stop()`` empties the outbox
before it stops the bus, and the bus lets local handlers finish, so nothing
published before ``stop()`` is lost to local subscribers.

As autobus 2, a client given no URL uses UDP multicast (``udp://239.255.0.1:5000``),
unless ``ADDRBUS_URL`` names another; pass ``url="memory://"`` for one process.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._bus import EventBus
from .._exceptions import ConfigError
from .._signals import stop_on_signals
from .events import event_address, event_body, register

if TYPE_CHECKING:
    from .._core.registration import Registration
    from .._jobs import Job

logger = logging.getLogger("addrbus._compat")
F = TypeVar("F", bound="Callable[..., Any]")

#: autobus 2 defaults to this multicast group; so does a Client given no URL.
AUTOBUS_URL = "udp://239.255.0.1:5000"


class Client:
    """An autobus client: subscribe, publish and schedule on one bus of its own.

    Subscriptions and jobs may be made before ``start()``; the bus is built
    then, from ``url`` (UDP multicast when None, as autobus), ``namespace``
    and ``shared_key`` (a Fernet key: frames are sealed with it).
    Events published before ``start()`` wait for it.

    Raises:
        ConfigError: at ``start()``, for a bad URL, namespace or key.
    """

    def __init__(self, url: str | None = None, namespace: str = "", shared_key: Any = None) -> None:
        self._config: tuple[str | None, str, Any] = (url, namespace, shared_key)
        self._bus: EventBus | None = None
        self._subscriptions: dict[tuple[type, Callable[..., Any]], Registration | None] = {}
        self._jobs: list[tuple[Any, Callable[..., Any]]] = []
        self._outbox: collections.deque[tuple[str, Any]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self._pump: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<Client {self._bus!r}>" if self._bus is not None else "<Client (not started)>"

    @property
    def bus(self) -> EventBus:
        """Return the underlying :class:`EventBus` (built on first use), for its wider API."""
        if self._bus is None:
            url, namespace, shared_key = self._config
            if url is None:
                url = os.environ.get("ADDRBUS_URL") or AUTOBUS_URL
            bus = EventBus(url, namespace=namespace, shared_key=shared_key)
            for key in self._subscriptions:
                self._subscriptions[key] = register(bus, *key)
            for trigger, fn in self._jobs:
                _add_job(bus, trigger, fn)
            self._bus = bus
        return self._bus

    # -- subscribing ----------------------------------------------------------------

    @overload
    def subscribe(self, event_type: type, fn: None = None) -> Callable[[F], F]: ...
    @overload
    def subscribe(self, event_type: type, fn: F) -> F: ...

    def subscribe(self, event_type: type, fn: F | None = None) -> Callable[[F], F] | F:
        """Call ``fn(event)`` for every event of exactly ``event_type`` (not its subclasses).

        A plain function runs in a worker thread, one event after another in
        the order published; an ``async`` one runs as a task. Return values are
        discarded; exceptions are logged. Subscribing the same function twice
        has no effect. As ``@subscribe(EventClass)`` it returns the function.

        Raises:
            TypeError: if ``event_type`` is not a class or ``fn`` is not callable.
        """
        if not isinstance(event_type, type):
            raise TypeError(f"subscribe() takes an event class, not {event_type!r}")
        if fn is None:
            return lambda actual: self.subscribe(event_type, actual)
        if not callable(fn):
            raise TypeError(f"subscribe() takes a function to call, not {fn!r}")
        key = (event_type, fn)
        if key not in self._subscriptions:
            self._subscriptions[key] = None if self._bus is None else register(self._bus, event_type, fn)
        return fn

    def unsubscribe(self, event_type: type, fn: Callable[..., Any]) -> None:
        """Stop calling ``fn`` for ``event_type``; events already queued for it are still handled."""
        registration = self._subscriptions.pop((event_type, fn), None)
        if registration is not None:
            registration.unregister()

    @overload
    def schedule(self, trigger: Any, fn: None = None) -> Callable[[F], F]: ...
    @overload
    def schedule(self, trigger: Any, fn: Callable[..., Any]) -> Job | None: ...

    def schedule(self, trigger: Any, fn: Callable[..., Any] | None = None) -> Callable[[F], F] | Job | None:
        """Run ``fn`` on ``trigger`` (``every(10).minutes``) while the client runs; without ``fn``, decorate.

        The job exists once the bus does (at ``start()``, or on first use of
        :attr:`bus`); then it is ``fn.job``.

        Raises:
            ConfigError: for a bad trigger, or if APScheduler is not installed
                (checked when the bus is built, at the latest at ``start()``).
        """
        if fn is None:

            def decorate(actual: F) -> F:
                self.schedule(trigger, actual)
                return actual

            return decorate
        job = None if self._bus is None else _add_job(self._bus, trigger, fn)
        self._jobs.append((trigger, fn))
        return job

    # -- publishing -----------------------------------------------------------------

    def publish(self, event: Any) -> None:
        """Publish ``event`` to every subscriber of its class, on every node; no ``await`` needed.

        Safe from sync and async code and from any thread. Before ``start()``
        the event waits in the outbox; once started, events go out in the order
        published. An event of a plain class (not a model) goes out as
        ``dict(event)``, read when it leaves the outbox. An event the bus then
        refuses (too large, not JSON-shaped, ``dict(event)`` fails) is logged,
        not raised: nobody awaits the publish.
        """
        self._outbox.append((event_address(type(event)), event))
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wakeup.set()
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # the loop closed meanwhile: the event waits for the next start
            pass

    async def _send_outbox(self, bus: EventBus, wakeup: asyncio.Event) -> None:
        outbox = self._outbox
        while True:
            while outbox:
                address, event = outbox.popleft()
                try:
                    await bus.publish(address, event_body(event))
                except Exception:
                    logger.exception("could not publish %s", type(event).__name__)
            if self._closing:
                return
            wakeup.clear()
            if not outbox:
                await wakeup.wait()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the bus and hand it the events published so far; idempotent.

        Raises:
            ConfigError: for a bad URL, namespace or key.
            TransportError: if the transport cannot start.
        """
        bus = self.bus
        if self._pump is not None:
            return
        await bus.start()
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        wakeup = self._wakeup = asyncio.Event()
        self._closing = False
        self._pump = self._loop.create_task(self._send_outbox(bus, wakeup), name="addrbus-compat-outbox")

    async def stop(self) -> None:
        """Publish every event still in the outbox, let local handlers finish, stop the bus; idempotent.

        From inside a handler, do not await it (the bus waits for that very
        handler): ``asyncio.get_running_loop().create_task(client.stop())``.
        """
        pump, wakeup = self._pump, self._wakeup
        if self._stop_requested is not None:
            self._stop_requested.set()
        if pump is not None and wakeup is not None:
            self._closing = True
            wakeup.set()
            try:
                await pump
            finally:
                self._pump = None
                self._loop = self._wakeup = None
        if self._bus is not None:
            await self._bus.stop()

    def run(self) -> None:
        """Start, run until SIGINT or SIGTERM (or ``stop()``), then stop; blocks, like ``asyncio.run``."""
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        await self.start()
        stop_requested = self._stop_requested or asyncio.Event()  # start() made it
        try:
            with stop_on_signals(stop_requested):
                await stop_requested.wait()
        finally:
            await self.stop()


class DefaultClient(Client):
    """The client behind the module-level API: ``start(url)`` and ``run(url)`` may configure it anew."""

    def configure(self, url: str | None, namespace: str, shared_key: Any) -> None:
        """Use this configuration from the next start (the module-level ``start``/``run`` call this)."""
        config = (url, namespace, shared_key)
        if config == self._config:
            return
        if self._bus is not None and self._bus.running:
            raise ConfigError("the client is running: stop() it before starting it with another url/namespace/key")
        self._config = config
        self._bus = None  # rebuilt, with every subscription and job, at start()


def _add_job(bus: EventBus, trigger: Any, fn: Callable[..., Any]) -> Job:
    job: Job = bus.schedule(trigger, fn)
    try:
        fn.job = job  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # a bound method or a builtin
        pass
    return job
