# Copied from github.com/schuyler/autobus, tests/test_scheduler.py at commit a29db6b901b8064f9957c3044dca9eff8c26ed4b.
# Copyright 2023 Schuyler Erle. MIT License: see LICENSE-autobus.md beside this file.
# The one change is the import: `import autobus` became `import addrbus as autobus`
# (and `from autobus import every` became `from addrbus import every`). Everything else
# is upstream's, unchanged; our conftest.py supplies the fixtures upstream's did.
import addrbus as autobus
import pytest
import asyncio, os

from addrbus import every

counter = 0

@pytest.mark.asyncio
async def test_scheduler():
    @autobus.schedule(every(0.25).seconds)
    def add_one():
        global counter
        counter += 1

    await autobus.start(url=os.environ.get("REDIS_URL"))
    await asyncio.sleep(1.1)
    await autobus.stop()

    assert counter == 4

if "REDIS_URL" not in os.environ:
    pytest.skip("set REDIS_URL to enable tests", allow_module_level=True)
