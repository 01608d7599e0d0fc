"""The contract on redis:// (TCP) and unix:// (socket), against a private redis-server."""

from __future__ import annotations

import pytest

from addrbus.testing.contract import BusContract
from tests.fixtures_redis import RedisServer


class TestRedis(BusContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def url(self) -> str:
        return self.server.url


class TestRedisUnixSocket(BusContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def url(self) -> str:
        return self.server.unix_url
