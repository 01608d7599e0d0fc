"""Our conftest for autobus's own tests, in place of autobus's (which needs pytest-asyncio).

What autobus's conftest and CI gave those tests, and how this one gives it:

* ``@pytest.mark.asyncio`` (pytest-asyncio, not installed here): the marker is
  registered, and anyio's pytest plugin runs the coroutine tests on asyncio,
  each on a fresh event loop, because ``tests/conftest.py`` marks every
  coroutine test ``anyio`` (backend ``"asyncio"``). Nothing else runs them:
  collection stops if one of them is not anyio-marked, or if pytest-asyncio is
  loaded too, so each test runs exactly once.
* ``autobus._reset_client()`` around each test: a fresh default client, as
  ``tests/test_compat.py`` gives its tests; one still running at teardown (a
  test that failed half-way) is stopped.
* ``REDIS_URL``, which autobus's CI points at a shared server: here, the
  private session redis-server of ``tests/fixtures_redis.py``. The Redis
  modules skip themselves at import unless ``REDIS_URL`` is set, before any
  fixture runs, so while pytest imports them it names a host that cannot
  resolve; each test then sees the private server's URL.
* ``test_multicast.py`` sends to autobus's default group (239.255.0.1:5000),
  so it runs only inside ``scripts/in-netns`` (skipped elsewhere, failed under CI).

``SKIPS`` lists, by node id, upstream tests addrbus cannot honour; it is empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from addrbus._compat import default as _compat
from tests.fixtures_netns import require_private_netns

HERE = Path(__file__).parent

#: What each upstream module needs, as the project's markers (``-m redis``, ``-m multicast``).
NEEDS = {"test_redis": "redis", "test_crypto": "redis", "test_scheduler": "redis", "test_multicast": "multicast"}

#: Upstream tests addrbus cannot honour: node id -> reason (report each in docs/migration-autobus.md).
SKIPS: dict[str, str] = {}

#: ``REDIS_URL`` while a Redis module is imported: never connected to, the tests see the real URL.
IMPORT_TIME_REDIS_URL = "redis://private-redis-server-fixture.invalid:6379/0"


def _upstream(path: Path) -> bool:
    return path.parent == HERE and path.stem in NEEDS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "asyncio: autobus's pytest-asyncio marker; anyio's plugin runs these tests on asyncio here"
    )


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    # Importing the module runs its `if "REDIS_URL" not in os.environ: pytest.skip(...)`.
    if isinstance(collector, pytest.Module) and _upstream(collector.path) and NEEDS[collector.path.stem] == "redis":
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REDIS_URL", IMPORT_TIME_REDIS_URL)
            return (yield)
    return (yield)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.has_plugin("asyncio"):
        raise pytest.UsageError("pytest-asyncio and anyio would both run autobus's tests: add -p no:asyncio")
    for item in items:
        if not _upstream(item.path):
            continue
        item.add_marker(NEEDS[item.path.stem])
        if item.get_closest_marker("asyncio") and not item.get_closest_marker("anyio"):
            raise pytest.UsageError(f"{item.nodeid}: an asyncio-marked test anyio's plugin would not run")
        if item.nodeid in SKIPS:
            item.add_marker(pytest.mark.skip(reason=SKIPS[item.nodeid]))


@pytest.fixture(autouse=True)
def autobus_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh default client; REDIS_URL names the private server (Redis modules) or nothing."""
    monkeypatch.setattr(_compat, "_default", None)  # autobus._reset_client()
    monkeypatch.delenv("ADDRBUS_URL", raising=False)  # no URL must mean autobus's multicast group
    monkeypatch.delenv("REDIS_URL", raising=False)
    if request.node.get_closest_marker("multicast"):
        require_private_netns()
    if request.node.get_closest_marker("redis"):
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_server").url)
    yield


@pytest.fixture(autouse=True)
async def stop_default_client(autobus_environment: None) -> AsyncIterator[None]:
    """Stop the test's default client if the test left it running (it failed before ``stop()``)."""
    yield
    if _compat._default is not None:
        await _compat._default.stop()
