"""The contract on nats://, against a private nats-server, and on a cluster of three."""

from __future__ import annotations

import pytest

from addrbus.testing.contract import BusContract
from tests.fixtures_nats import NatsCluster, NatsServer

pytestmark = pytest.mark.nats


class TestNats(BusContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_server: NatsServer) -> None:
        self.server = nats_server

    def url(self) -> str:
        return self.server.url


class TestNatsCluster(BusContract):
    """Each bus of a test on a server of its own: the cluster's routes carry everything between them."""

    @pytest.fixture(autouse=True)
    def _cluster(self, nats_cluster: NatsCluster) -> None:
        self.cluster = nats_cluster
        self.turn = 0

    def url(self) -> str:
        self.turn += 1
        return self.cluster.servers[self.turn % 3].url
