"""UDP multicast transport (``udp://GROUP:PORT``): the transport in ``transport``, the datagram format in ``wire``."""

from __future__ import annotations

from .transport import UdpTransport, from_url
from .wire import HEADER_SIZE, MAGIC, MAX_PAYLOAD

__all__ = ["HEADER_SIZE", "MAGIC", "MAX_PAYLOAD", "UdpTransport", "from_url"]
