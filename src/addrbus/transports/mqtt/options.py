"""Parse an mqtt:// or mqtts:// bus URL into the transport's options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..._exceptions import ConfigError
from .._urls import parse_query, positive, redact, to_bool

#: MQTT's own limit on a packet's "remaining length" (256 MiB - 1): header, topic, properties and payload.
MQTT_MAX_PACKET = 268_435_455
#: Room kept under that limit for the fixed header, the longest topic (65,535 bytes) and properties.
PACKET_OVERHEAD = 70_000

DEFAULT_MAX_FRAME = 8 * 2**20
"""mosquitto accepts any packet MQTT allows by default (``message_size_limit 0``,
no ``max_packet_size``), but each frame is copied to every subscriber's socket
while others wait behind it; 8 MiB matches redis://. Raise it up to
:data:`MQTT_MAX_PACKET` minus :data:`PACKET_OVERHEAD`."""


def _qos(raw: str) -> int:
    if raw not in {"0", "1"}:
        raise ValueError(f"expected 0 (at most once) or 1 (at least once to the broker), got {raw!r}")
    return int(raw)


def _frame_size(raw: str) -> int:
    value = int(raw)
    if not 0 < value <= MQTT_MAX_PACKET - PACKET_OVERHEAD:
        raise ValueError(f"expected 1 to {MQTT_MAX_PACKET - PACKET_OVERHEAD} (MQTT's packet limit), got {raw!r}")
    return value


def _client_id(raw: str) -> str:
    if not raw or len(raw.encode()) > 65_535:
        raise ValueError("expected a non-empty client id of at most 65,535 bytes")
    return raw


#: Query arguments of every MQTT URL.
TRANSPORT_ARGS: dict[str, Callable[[str], object]] = {
    "qos": _qos,
    "client_id": _client_id,
    "timeout": positive(float),
    "connect_timeout": positive(float),
    "keepalive": positive(int),
    "max_pending": positive(int),
    "max_frame_size": _frame_size,
}

#: Query arguments of mqtts:// only.
TLS_ARGS: dict[str, Callable[[str], object]] = {
    "ca_certs": str,
    "certfile": str,
    "keyfile": str,
    "check_hostname": to_bool,
}


@dataclass(frozen=True)
class MqttOptions:
    """Everything an MQTT bus URL says, with the password kept out of ``repr``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    qos: int = 0
    client_id: str | None = None  # None: "addrbus-<node id>"
    timeout: float = 5.0
    connect_timeout: float = 5.0
    keepalive: int = 2
    max_pending: int = 1024
    max_frame_size: int = DEFAULT_MAX_FRAME
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True


def parse_mqtt_url(url: str) -> MqttOptions:
    """Parse ``url`` into :class:`MqttOptions`.

    :raises ConfigError: for a bad scheme, host, port, path or query argument.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"mqtt", "mqtts"}:
        raise ConfigError(f"not an MQTT URL: {redact(url)!r} (use mqtt:// or mqtts://)")
    tls = scheme == "mqtts"
    accepted = dict(TRANSPORT_ARGS)
    if tls:
        accepted.update(TLS_ARGS)
    query = parse_query(url, accepted)
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"bad port in {redact(url)!r}") from None
    if parts.path not in {"", "/"}:
        raise ConfigError(f"an MQTT URL has no path: {redact(url)!r} (use namespace= on the bus)")
    if tls and "certfile" not in query and "keyfile" in query:
        raise ConfigError(f"keyfile needs certfile in {redact(url)!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if password is not None and username is None:
        raise ConfigError(f"MQTT sends a password only with a user name: {redact(url)!r}")
    kwargs: dict[str, object] = dict(query)
    return MqttOptions(
        host=unquote(parts.hostname or "localhost"), port=port, tls=tls,
        username=username, password=password, **kwargs,  # type: ignore[arg-type]
    )
