"""URL helpers every transport shares: query arguments through converters, and redaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from .._exceptions import ConfigError


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


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """Return a converter of a URL argument to a positive (and finite) ``kind``."""

    def convert(raw: str) -> float:
        value = kind(raw)
        if not 0 < value < float("inf"):
            raise ValueError(f"expected a positive number, got {raw!r}")
        return value

    return convert
