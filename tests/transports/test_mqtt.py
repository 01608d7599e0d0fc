"""The contract on mqtt://, against a private mosquitto."""

from __future__ import annotations

import pytest

from addrbus.testing.contract import BusContract
from tests.fixtures_mqtt import Mosquitto

pytestmark = pytest.mark.mqtt


class TestMqtt(BusContract):
    @pytest.fixture(autouse=True)
    def _server(self, mosquitto: Mosquitto) -> None:
        self.server = mosquitto

    def url(self) -> str:
        return self.server.url
