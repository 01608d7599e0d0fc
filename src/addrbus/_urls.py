"""Turn a bus URL into a transport: one table of schemes, imported lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl, urlsplit

from ._exceptions import ConfigError

if TYPE_CHECKING:
    from .transports.base import Transport

T = TypeVar("T")

#: scheme -> module that defines ``from_url(url) -> Transport``.
SCHEMES: dict[str, str] = {
    "memory": "addrbus.transports.memory",
    "udp": "addrbus.transports.udp",
    "redis": "addrbus.transports.redis",
    "rediss": "addrbus.transports.redis",
    "unix": "addrbus.transports.redis",
}

DEFAULT_URL = "memory://"


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return parts._replace(netloc=netloc).geturl()


def make_transport(url: str) -> Transport:
    """Build the transport for ``url``.

    :raises ConfigError: for an unknown scheme or a bad query argument.
    """
    if not isinstance(url, str):
        raise ConfigError(f"the bus URL must be a string, not {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower()
    module_name = SCHEMES.get(scheme)
    if module_name is None:
        accepted = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"unknown bus URL scheme {scheme!r} in {redact(url)!r}; accepted: {accepted}")
    module = importlib.import_module(module_name)
    transport: Transport = module.from_url(url)
    return transport


def parse_query(url: str, converters: Mapping[str, Callable[[str], object]]) -> dict[str, object]:
    """Parse ``url``'s query with one converter per accepted argument.

    :raises ConfigError: naming the accepted arguments, for an unknown one, or
        naming the argument, for a value its converter rejects.
    """
    result: dict[str, object] = {}
    for key, raw in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        convert = converters.get(key)
        if convert is None:
            accepted = ", ".join(sorted(converters)) or "none"
            raise ConfigError(f"unknown URL argument {key!r} in {redact(url)!r}; accepted: {accepted}")
        try:
            result[key] = convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value for URL argument {key!r} in {redact(url)!r}: {exc}") from None
    return result


def to_bool(raw: str) -> bool:
    """Convert a URL flag (``1/0``, ``true/false``, ``yes/no``, ``on/off``)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on", ""}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")
