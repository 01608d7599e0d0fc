"""Two commits of addrbus in one process, alternating: in-process request/reply (1 and 100 requesters), publish.

Run::

    .venv/bin/python benchmarks/compare.py [--base REV] [--rounds N]

It copies ``src/addrbus`` of ``REV`` (default ``HEAD``) and of the working
tree into a scratch directory as two packages, imports both, and runs the
same scenarios on each in turn, ``--rounds`` times. Alternating within one
process cancels most of the drift of a busy machine, which separate runs of
``inprocess.py`` cannot (their figures move by 20 % from run to run here).
Figures are per CPU second; the ratio printed is the median of the rounds'
new/old ratios. A restructuring should keep both ratios near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUESTS, PUBLISHES, LISTENERS = 20_000, 5_000, 10


def package(dest: Path, name: str, tree: Path) -> None:
    """Copy the package at ``tree`` to ``dest/name``, its transport registry pointed at itself."""
    shutil.copytree(tree, dest / name)
    registry = dest / name / "transports" / "registry.py"
    registry.write_text(registry.read_text().replace('"addrbus.transports.', f'"{name}.transports.'))


def base_tree(rev: str, scratch: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/addrbus"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(scratch / "base", filter="data")
    return scratch / "base" / "src" / "addrbus"


async def scenario(mod: Any) -> tuple[float, float, float]:
    bus = mod.EventBus()

    @bus.on("echo")
    async def echo(n: int) -> int:
        return n

    for _ in range(LISTENERS):
        @bus.on("fan")
        async def listener(n: int) -> None:
            return None

    async with bus:
        for _ in range(2_000):
            await bus.request("echo", 1)
        t = time.process_time()
        for i in range(REQUESTS):
            await bus.request("echo", i)
        requests = REQUESTS / (time.process_time() - t)

        async def requester(n: int) -> None:
            for i in range(n):
                await bus.request("echo", i)

        t = time.process_time()
        await asyncio.gather(*(requester(REQUESTS // 100) for _ in range(100)))
        hundred = REQUESTS // 100 * 100 / (time.process_time() - t)
        t = time.process_time()
        for _ in range(PUBLISHES // 500):
            for i in range(500):
                await bus.publish("fan", i)
            await bus.drain()
        deliveries = PUBLISHES * LISTENERS / (time.process_time() - t)
    return requests, hundred, deliveries


async def main(rounds: int) -> None:
    mods = {name: importlib.import_module(name) for name in ("addrbus_base", "addrbus_work")}
    got: dict[str, list[tuple[float, float, float]]] = {name: [] for name in mods}
    for _ in range(rounds):
        for name, mod in mods.items():
            got[name].append(await scenario(mod))
    print(f"{'figure (per CPU second)':<40} {'base':>12} {'working':>12} {'ratio':>7}")
    figures = ("request/reply, 1 requester", "request/reply, 100 requesters",
               f"publish 1 -> {LISTENERS} listeners, deliveries")
    for i, figure in enumerate(figures):
        base = statistics.median(r[i] for r in got["addrbus_base"])
        work = statistics.median(r[i] for r in got["addrbus_work"])
        ratio = statistics.median(w[i] / b[i] for b, w in zip(got["addrbus_base"], got["addrbus_work"], strict=True))
        print(f"{figure:<40} {base:>12,.0f} {work:>12,.0f} {ratio:>6.3f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the commit to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="addrbus-compare-") as tmp:
        scratch = Path(tmp)
        package(scratch, "addrbus_base", base_tree(args.base, scratch))
        package(scratch, "addrbus_work", ROOT / "src" / "addrbus")
        sys.path.insert(0, str(scratch))
        print(f"base {args.base} against the working tree, {args.rounds} alternating rounds")
        asyncio.run(main(args.rounds))
