"""The docs' example third-party transport, installed through an entry point, passes the whole contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from addrbus.testing.contract import BusContract
from tests.conftest import unique
from tests.transports._entry_points import PIPE_SNIPPET, installed


@pytest.fixture(scope="module", autouse=True)
def pipe_scheme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Install docs/snippets/custom_transport.py as the ``pipe`` scheme of a fake distribution."""
    root = tmp_path_factory.mktemp("site")
    with installed(root, {"pipe": "custom_transport"}, {"custom_transport": PIPE_SNIPPET.read_text()}):
        yield


class TestCustomTransport(BusContract):
    def url(self) -> str:
        return f"pipe://{unique('pipe')}"
