"""Parse a nats:// or tls:// bus URL: the servers (a cluster is a list), credentials and the transport's arguments.

Accepted forms: ``nats://host:4222``, ``tls://host:4222``, ``nats://user:pass@host``,
``nats://h1:4222,h2:4222`` (servers of one cluster; the credentials of the first
apply to all), and the query arguments of :data:`ARGS`. The password and the
token are kept out of ``repr`` and out of :func:`redact`'s text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ..._exceptions import ConfigError
from .._urls import parse_query, positive

DEFAULT_PORT = 4222
_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]/@,]+)(?::(\d{1,5}))?")


def _name(raw: str) -> str:
    if not raw or len(raw) > 256:
        raise ValueError("expected a client name of 1 to 256 characters")
    return raw


#: Query arguments: what each means is in docs/transports/nats.md.
ARGS: dict[str, Callable[[str], object]] = {
    "token": str,
    "creds": str,
    "name": _name,
    "connect_timeout": positive(float),
    "timeout": positive(float),
    "ca_certs": str,
    "certfile": str,
    "keyfile": str,
}


@dataclass(frozen=True)
class NatsOptions:
    """Everything a NATS bus URL says, with the secrets kept out of ``repr``."""

    servers: tuple[str, ...]  # nats://host:port or tls://host:port, without credentials
    tls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: str | None = None  # a path; its contents are read by nats-py, never by us
    name: str | None = None
    connect_timeout: float = 5.0
    timeout: float = 5.0
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def connect_kwargs(self) -> dict[str, Any]:
        """Return what :func:`nats.connect` takes, but for the TLS context and the callbacks."""
        kwargs: dict[str, Any] = {"servers": list(self.servers), "name": self.name}
        if self.user is not None:
            kwargs["user"] = self.user
            kwargs["password"] = self.password or ""
        if self.token is not None:
            kwargs["token"] = self.token
        if self.creds is not None:
            kwargs["user_credentials"] = self.creds
        return kwargs


def redact(url: str) -> str:
    """Return ``url`` with the password and the token replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    if qmark:
        pairs = [(key, "***" if key == "token" else value) for key, value in parse_qsl(query, keep_blank_values=True)]
        query = "&".join(f"{quote(key)}={value if value == '***' else quote(value)}" for key, value in pairs)
    return f"{scheme}://{netloc}{slash}{path}{qmark}{query}"


def parse_nats_url(url: str) -> NatsOptions:
    """Parse ``url`` into :class:`NatsOptions`.

    :raises ConfigError: for another scheme, a bad server list or port, or an
        unknown or bad query argument (naming the accepted ones).
    """
    if not isinstance(url, str):
        raise ConfigError(f"the bus URL must be a string, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower()
    if scheme not in {"nats", "tls"}:
        raise ConfigError(f"not a NATS URL: {redact(url)!r} (use nats:// or tls://)")
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"unexpected path or fragment in {redact(url)!r}: expected nats://host:port[,host:port...]")
    query: dict[str, Any] = parse_query(url, ARGS)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = password = None
    if userinfo:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user)
        password = unquote(raw_password) if colon else None
    servers = []
    for entry in (hosts or "localhost").split(","):
        match = _HOST_PORT.fullmatch(entry.strip())
        port = int(match.group(2)) if match and match.group(2) else DEFAULT_PORT
        if match is None or not 0 < port < 65536:
            raise ConfigError(f"bad server {entry!r} in {redact(url)!r}: expected host or host:port, port 1 to 65535")
        servers.append(f"{scheme}://{match.group(1)}:{port}")
    tls = scheme == "tls" or any(key in query for key in ("ca_certs", "certfile", "keyfile"))
    if ("certfile" in query) != ("keyfile" in query):
        raise ConfigError(f"certfile and keyfile go together in {redact(url)!r}")
    return NatsOptions(servers=tuple(servers), tls=tls, user=user, password=password, **query)
