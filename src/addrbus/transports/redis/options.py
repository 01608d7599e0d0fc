"""Parse a redis://, rediss:// or unix:// bus URL into transport options and connection arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..._exceptions import ConfigError
from .._urls import parse_query, positive, redact, to_bool

DEFAULT_MAX_FRAME = 8 * 2**20
"""Redis' default pub/sub output-buffer limit is 32 MiB hard / 8 MiB for 60 s: a
subscriber sent much more than this at once is disconnected by the server."""


def _non_negative(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"expected 0 or a positive number, got {raw!r}")
    return value


def _cert_reqs(raw: str) -> str:
    if raw not in {"none", "optional", "required"}:
        raise ValueError(f"expected none, optional or required, got {raw!r}")
    return raw


#: Query arguments of the transport itself.
TRANSPORT_ARGS: dict[str, Callable[[str], object]] = {
    "heartbeat": positive(float),
    "connect_timeout": positive(float),
    "timeout": positive(float),
    "max_pending": positive(int),
    "max_frame_size": positive(int),
    "stall_timeout": _non_negative,
    "db": int,
}

#: Query arguments handed to redis-py's TLS connection (rediss:// only).
TLS_ARGS: dict[str, Callable[[str], object]] = {
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": to_bool,
}


@dataclass(frozen=True)
class RedisOptions:
    """Everything a redis bus URL says, with the secrets kept out of ``repr``."""

    kind: str  # "tcp", "tls" or "unix": which redis-py connection class to use
    heartbeat: float = 1.0
    connect_timeout: float = 5.0
    timeout: float = 5.0
    max_pending: int = 1024
    max_frame_size: int = DEFAULT_MAX_FRAME
    stall_timeout: float = 15.0
    connect_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisOptions:
    """Parse ``url`` into :class:`RedisOptions`.

    :raises ConfigError: for a bad scheme, host, port, database or query argument.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"not a Redis URL: {redact(url)!r} (use redis://, rediss:// or unix://)")
    accepted = dict(TRANSPORT_ARGS)
    if scheme == "rediss":
        accepted.update(TLS_ARGS)
    query = parse_query(url, accepted)
    kwargs: dict[str, Any] = {}
    password = unquote(parts.password) if parts.password is not None else None
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    if password:
        kwargs["password"] = password

    if scheme == "unix":
        if not parts.path:
            raise ConfigError(f"a unix:// URL needs a socket path: {redact(url)!r}")
        kwargs["path"] = unquote(parts.path)
        kind = "unix"
    else:
        try:
            port = parts.port or 6379
        except ValueError:
            raise ConfigError(f"bad port in {redact(url)!r}") from None
        kwargs["host"] = unquote(parts.hostname or "localhost")
        kwargs["port"] = port
        db_path = parts.path.strip("/")
        if db_path and "db" not in query:
            if not db_path.isdigit():
                raise ConfigError(f"the path of {redact(url)!r} must be a database number")
            kwargs["db"] = int(db_path)
        kind = "tls" if scheme == "rediss" else "tcp"
    kwargs.update({key: value for key, value in query.items() if key in TLS_ARGS or key == "db"})
    opts: dict[str, Any] = {key: value for key, value in query.items() if key not in TLS_ARGS and key != "db"}
    return RedisOptions(kind=kind, connect_kwargs=kwargs, password=password, **opts)
