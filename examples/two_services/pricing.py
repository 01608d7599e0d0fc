"""What the two processes of the tutorial share: the address, the types and how to find the bus.

Both ``service.py`` and ``client.py`` import this module (it sits beside them, so
``python examples/two_services/service.py`` finds it). Over a network every body
travels as JSON: the :class:`~addrbus.Endpoint` names the types at both ends, and
each end validates what it receives.
"""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, Field

from addrbus import Endpoint, EventBus

#: Every process on this host that uses the same group and port (no server to run).
DEFAULT_URL = "udp://239.255.0.1:5000"


class QuoteRequest(BaseModel):
    item: str
    quantity: int = Field(gt=0)


class Quote(BaseModel):
    item: str
    quantity: int
    total_cents: int
    by: str  # the node id of the service that answered


#: Requests are QuoteRequests and replies Quotes, checked by mypy and validated at run time.
QUOTE = Endpoint[QuoteRequest, Quote]("pricing.quote")


def make_bus() -> EventBus:
    """Build the bus the processes share: the URL given as the first argument, else ADDRBUS_URL.

    ``ADDRBUS_NAMESPACE`` and ``ADDRBUS_SHARED_KEY`` are read as
    ``EventBus.from_env()`` reads them: processes meet only with the same URL,
    namespace and key.
    """
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ADDRBUS_URL") or DEFAULT_URL
    return EventBus(
        url,
        namespace=os.environ.get("ADDRBUS_NAMESPACE", ""),
        shared_key=os.environ.get("ADDRBUS_SHARED_KEY") or None,
    )
