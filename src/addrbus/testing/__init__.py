"""Helpers for testing code that uses addrbus: a pytest plugin and a :class:`Recorder`.

Installed with addrbus, the plugin gives every test two fixtures:

- ``bus``: a started ``EventBus("memory://?serialize=1")`` (every message
  round-trips through JSON, as on a network), stopped after the test. It is an
  ``async`` fixture: use it from ``async def`` tests run by anyio's pytest
  plugin (``@pytest.mark.anyio``, backend ``asyncio``) or by pytest-asyncio in
  ``asyncio_mode = "auto"``. Under pytest-asyncio's strict mode, declare it::

      @pytest_asyncio.fixture
      async def bus():
          async with EventBus("memory://?serialize=1") as bus:
              yield bus

- ``recorder``: a :class:`Recorder` of everything the ``bus`` fixture
  publishes, sends and requests.

A third-party transport proves itself with :mod:`addrbus.testing.contract`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from .._addresses import address_of
from .._bus import EventBus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import TracebackType

__all__ = ["Call", "Recorder", "bus", "recorder"]

# A contract case that fails should show its values, as a project's own test would,
# even where pytest did not load this plugin (and so did not mark addrbus for rewriting).
pytest.register_assert_rewrite("addrbus.testing.contract")

KINDS = ("publish", "send", "request")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One ``publish``, ``send`` or ``request`` made on a bus."""

    kind: str
    address: str
    body: Any
    headers: dict[str, str]


class Recorder:
    """Record what a bus publishes, sends and requests, to assert on it in tests.

    Records from construction until ``close()`` (or the end of a ``with``
    block); with ``addresses``, only calls to those. Calls are recorded as
    made, whether or not anyone handled them.

    Args:
        bus: the bus to observe, through its :meth:`~addrbus.EventBus.add_observer`.
        *addresses: record only these (``str``, ``str`` Enum or Endpoint).

    Raises:
        TypeError: if ``bus`` cannot be observed (it has no ``add_observer``).
    """

    def __init__(self, bus: EventBus, *addresses: Any) -> None:
        add_observer = getattr(bus, "add_observer", None)
        if not callable(add_observer):
            # The message names the _observers list add_observer replaced: callers matched on that word.
            raise TypeError(f"{bus!r} cannot be observed: it has no add_observer() (once its _observers list)")
        self._only = frozenset(address_of(a) for a in addresses)
        self._calls: list[Call] = []
        self._waiters: list[tuple[str | None, str | None, int, asyncio.Future[None]]] = []
        self._remove: Callable[[], None] | None = add_observer(self._observe)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording; what was recorded stays readable."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def _observe(self, kind: str, address: str, body: Any, headers: dict[str, str]) -> None:
        if self._only and address not in self._only:
            return
        self._calls.append(Call(kind, address, body, dict(headers)))
        for waiter in list(self._waiters):
            w_kind, w_address, count, future = waiter
            if future.done():
                self._waiters.remove(waiter)
            elif len(self._select(w_kind, w_address)) >= count:
                self._waiters.remove(waiter)
                future.set_result(None)

    def _select(self, kind: str | None, address: Any) -> list[Call]:
        addr = None if address is None else address_of(address)
        return [c for c in self._calls if (kind is None or c.kind == kind) and (addr is None or c.address == addr)]

    @property
    def calls(self) -> list[Call]:
        """Return every recorded call, oldest first."""
        return list(self._calls)

    def published(self, address: Any = None) -> list[Any]:
        """Return the bodies published (to ``address``, if given), oldest first."""
        return [c.body for c in self._select("publish", address)]

    def sent(self, address: Any = None) -> list[Any]:
        """Return the bodies sent (to ``address``, if given), oldest first."""
        return [c.body for c in self._select("send", address)]

    def requested(self, address: Any = None) -> list[Any]:
        """Return the bodies of the requests made (to ``address``, if given), oldest first."""
        return [c.body for c in self._select("request", address)]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self._calls.clear()

    async def wait_for(self, kind: str | None = None, address: Any = None, *, count: int = 1,
                       timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` matching calls are recorded; return them all.

        Args:
            kind: ``"publish"``, ``"send"``, ``"request"`` or None for any.
            address: only calls to this address; None for any.
            count: how many to wait for.
            timeout: seconds.

        Raises:
            ValueError: for an unknown ``kind``.
            TimeoutError: if fewer than ``count`` were recorded in time.
        """
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, not {kind!r}")
        addr = None if address is None else address_of(address)
        if len(self._select(kind, addr)) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (kind, addr, count, future)
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                found = len(self._select(kind, addr))
                raise TimeoutError(
                    f"{found} of {count} {kind or 'call'}(s) to {addr or 'any address'} recorded in {timeout} s"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._select(kind, addr)


# -- the pytest plugin (entry point ``pytest11: addrbus = "addrbus.testing"``) ------------


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    """Yield a started ``EventBus("memory://?serialize=1")``; stop it after the test."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise pytest.UsageError(
            "the addrbus 'bus' fixture needs asyncio: under anyio, define"
            " `@pytest.fixture def anyio_backend(): return 'asyncio'`"
        ) from None
    async with EventBus("memory://?serialize=1") as started:
        yield started


@pytest.fixture
def recorder(bus: EventBus) -> Iterator[Recorder]:
    """Yield a :class:`Recorder` of the ``bus`` fixture."""
    with Recorder(bus) as rec:
        yield rec
