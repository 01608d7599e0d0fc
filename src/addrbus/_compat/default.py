"""The module-level autobus API (``autobus.publish(...)``, ``autobus.run()``), on one default client."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .client import DefaultClient

if TYPE_CHECKING:
    from .._jobs import Job

F = TypeVar("F", bound="Callable[..., Any]")


_default: DefaultClient | None = None


def _client() -> DefaultClient:
    global _default
    if _default is None:
        _default = DefaultClient()
    return _default


@overload
def subscribe(event_type: type, fn: None = None) -> Callable[[F], F]: ...
@overload
def subscribe(event_type: type, fn: F) -> F: ...


def subscribe(event_type: type, fn: F | None = None) -> Callable[[F], F] | F:
    """Call ``fn(event)`` for every event of exactly ``event_type``; see :meth:`Client.subscribe`."""
    return _client().subscribe(event_type, fn)


def unsubscribe(event_type: type, fn: Callable[..., Any]) -> None:
    """Stop calling ``fn`` for ``event_type``."""
    _client().unsubscribe(event_type, fn)


def publish(event: Any) -> None:
    """Publish ``event`` to the subscribers of its class; no ``await`` needed. See :meth:`Client.publish`."""
    _client().publish(event)


@overload
def schedule(trigger: Any, fn: None = None) -> Callable[[F], F]: ...
@overload
def schedule(trigger: Any, fn: Callable[..., Any]) -> Job | None: ...


def schedule(trigger: Any, fn: Callable[..., Any] | None = None) -> Callable[[F], F] | Job | None:
    """Run ``fn`` on ``trigger`` while the default client runs: ``@schedule(every(10).minutes)``."""
    return _client().schedule(trigger, fn)


async def start(url: str | None = None, namespace: str = "", shared_key: Any = None) -> None:
    """Start the default client on ``url`` (UDP multicast when None, as autobus 2).

    Raises:
        ConfigError: for a bad URL, namespace or key, or if it runs with another.
        TransportError: if the transport cannot start.
    """
    client = _client()
    client.configure(url, namespace, shared_key)
    await client.start()


async def stop() -> None:
    """Publish what is still queued, let local handlers finish and stop the default client."""
    await _client().stop()


def run(url: str | None = None, namespace: str = "", shared_key: Any = None) -> None:
    """Run the default client until SIGINT or SIGTERM; blocks, like ``autobus.run()``.

    Raises:
        ConfigError: for a bad URL, namespace or key.
        TransportError: if the transport cannot start.
    """
    client = _client()
    client.configure(url, namespace, shared_key)
    client.run()
