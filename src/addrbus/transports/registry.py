"""Turn a bus URL into a transport: built-in schemes, plus those installed as entry points.

A built-in scheme maps to a module of this package that defines
``from_url(url) -> Transport``; the module is imported only when a URL uses
the scheme, so ``import addrbus`` never imports redis-py.

A third-party package adds a scheme with an entry point in the group
``addrbus.transports``: its name is the scheme, its value either a module
with ``from_url`` or the factory itself (``"pkg.mod:from_url"``)::

    [project.entry-points."addrbus.transports"]
    nats = "addrbus_nats"

Installed entry points are looked up only for a scheme that is not built in,
and loaded only when a URL uses them. A built-in scheme cannot be taken over.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._exceptions import ConfigError
from ._urls import redact
from .base import Transport

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["ENTRY_POINT_GROUP", "SCHEMES", "available_schemes", "make_transport", "redact"]

logger = logging.getLogger("addrbus.transports.registry")

#: The entry-point group third-party transports register under.
ENTRY_POINT_GROUP = "addrbus.transports"

#: Built-in scheme -> module that defines ``from_url(url) -> Transport``.
SCHEMES: dict[str, str] = {
    "memory": "addrbus.transports.memory",
    "udp": "addrbus.transports.udp",
    "redis": "addrbus.transports.redis",
    "rediss": "addrbus.transports.redis",
    "unix": "addrbus.transports.redis",
    "nats": "addrbus.transports.nats",
    "tls": "addrbus.transports.nats",
    "mqtt": "addrbus.transports.mqtt",
    "mqtts": "addrbus.transports.mqtt",
}

# Entry points already warned about, so that each clash is logged once, not per bus.
_refused: set[str] = set()


def make_transport(url: str) -> Transport:
    """Build the transport for ``url``.

    :raises ConfigError: for an unknown scheme, a bad query argument, or an
        installed transport that cannot be loaded.
    """
    if not isinstance(url, str):
        raise ConfigError(f"the bus URL must be a string, not {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower()
    module_name = SCHEMES.get(scheme)
    if module_name is not None:
        module = importlib.import_module(module_name)
        transport: Transport = module.from_url(url)
        return transport
    installed = _installed()
    entry = installed.get(scheme)
    if entry is None:
        accepted = ", ".join(f"{s}://" for s in [*SCHEMES, *sorted(installed)])
        raise ConfigError(f"unknown bus URL scheme {scheme!r} in {redact(url)!r}; accepted: {accepted}")
    return _build(entry, scheme, url)


def available_schemes() -> list[str]:
    """Return every scheme a bus URL may use, built-in and installed, sorted."""
    return sorted({*SCHEMES, *_installed()})


def _installed() -> dict[str, EntryPoint]:
    # Imported here: scanning distributions is only needed for a scheme that is not built in.
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        scheme = entry.name.lower()
        if scheme in SCHEMES:
            if entry.value not in _refused:
                _refused.add(entry.value)
                logger.warning("ignoring the transport entry point %s = %s: %s:// is built in",
                               entry.name, entry.value, scheme)
            continue
        found.setdefault(scheme, entry)
    return found


def _build(entry: EntryPoint, scheme: str, url: str) -> Transport:
    where = f"the transport entry point {entry.name} = {entry.value} for {scheme}://"
    try:
        loaded = entry.load()
    except Exception as exc:
        raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    factory = getattr(loaded, "from_url", None) if isinstance(loaded, ModuleType) else loaded
    if not callable(factory):
        raise ConfigError(f"{where} is neither a module with from_url(url) nor a callable")
    transport = factory(url)
    if not isinstance(transport, Transport):
        raise ConfigError(f"{where} returned {type(transport).__name__}, not a Transport")
    return transport
