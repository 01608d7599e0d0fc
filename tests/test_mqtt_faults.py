"""The bus over MQTT when the broker stops taking frames: a request still ends at its own deadline.

With ``qos=1`` a publish waits for the broker's PUBACK; a broker frozen with
SIGSTOP never sends it. The request's frame is handed over within the request's
timeout, not the transport's (5 s by default), so the caller gets its
``RequestTimeout`` on time.
"""

from __future__ import annotations

import asyncio

import pytest

from addrbus import EventBus, RequestTimeout
from tests._faults import WAIT, Echo
from tests.conftest import unique
from tests.fixtures_mqtt import Mosquitto

pytestmark = pytest.mark.mqtt


async def test_a_request_into_a_frozen_broker_ends_at_its_own_timeout(fault_mosquitto: Mosquitto) -> None:
    url = fault_mosquitto.url + "?qos=1&keepalive=30"
    namespace, address = unique("ns"), unique("echo")
    echo = Echo()
    responder = EventBus(url, namespace=namespace, stop_timeout=1.0)
    echo.register(responder, address)
    client = EventBus(url, namespace=namespace, stop_timeout=1.0)
    async with responder, client:
        await client.wait_for_handlers(address, 1, timeout=WAIT)
        assert await client.request(address, "warm", timeout=WAIT) == "warm"
        loop = asyncio.get_running_loop()
        fault_mosquitto.pause()
        try:
            for timeout in (0.3, 0.6):
                began = loop.time()
                with pytest.raises(RequestTimeout):
                    await client.request(address, "into the freeze", timeout=timeout)
                took = loop.time() - began
                assert timeout - 0.01 <= took < timeout + 0.15, f"a {timeout} s request took {took:.3f} s"
            assert client.stats()["pending_requests"] == 0
        finally:
            fault_mosquitto.resume()
        assert await client.request(address, "thawed", timeout=WAIT) == "thawed"
