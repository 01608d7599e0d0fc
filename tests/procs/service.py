"""One node of a cross-process test: ``python tests/procs/service.py ROLE URL NAMESPACE ADDRESS [ARG]``.

Roles:

* ``serve``: answer ``Order`` requests at ADDRESS with a ``Receipt``.
* ``client``: wait for a handler at ADDRESS (unless ARG is ``--no-wait``),
  send one ``Order`` request, print the ``Receipt`` and exit.
* ``consume``: take ``int`` sends at ADDRESS and remember their ids; answer
  a request at ``ADDRESS.report.ARG`` with those ids and the bus's counters.
* ``hang``: take requests at ADDRESS and never answer; print ``handling N``
  for each one, so the test knows when to kill this process.

Every long-lived role prints ``ready NODE_ID`` once its bus has started, and
runs until SIGTERM, SIGINT, end of stdin, or ``LIFETIME`` seconds (so that a
crashed test never leaves a process behind). Lines the test reads start with
a keyword; anything else on stdout (a log line) is ignored by it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from addrbus import EventBus, ReplyError
from tests.procs.lifecycle import emit, until_told_to_stop

HEARTBEAT = 0.2  # seconds: a killed node is dropped after three missed beats
LIFETIME = 60.0  # seconds: the longest any helper process lives


class Order(BaseModel):
    id: uuid.UUID
    placed: datetime
    items: list[str]
    note: str | None = None


class Receipt(BaseModel):
    order: uuid.UUID
    total: int
    placed: datetime
    by: str


SAMPLE = Order(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    placed=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    items=["apple", "pear", "plum"],
    note="ça va ✓",
)


async def serve(bus: EventBus, address: str, _arg: str) -> None:
    @bus.on(address)
    async def place(order: Order) -> Receipt:
        return Receipt(order=order.id, total=len(order.items), placed=order.placed, by=bus.node_id)

    async with bus:
        emit("ready", bus.node_id)
        await until_told_to_stop(LIFETIME)


async def client(bus: EventBus, address: str, arg: str) -> None:
    async with bus:
        try:
            if arg != "--no-wait":
                await bus.wait_for_handlers(address, 1, timeout=10.0)
            receipt = await bus.request(address, SAMPLE, response_type=Receipt, timeout=10.0)
        except ReplyError as exc:
            emit("error", type(exc).__name__, exc)
            raise SystemExit(1) from None
        emit("receipt", receipt.model_dump_json())


async def consume(bus: EventBus, address: str, index: str) -> None:
    handled: list[int] = []

    @bus.on(address, max_queue=100_000)
    async def take(n: int) -> None:
        handled.append(n)

    @bus.on(f"{address}.report.{index}")
    async def report() -> dict[str, Any]:
        return {"ids": handled, "stats": bus.stats()}

    async with bus:
        emit("ready", bus.node_id)
        await until_told_to_stop(LIFETIME)


async def hang(bus: EventBus, address: str, _arg: str) -> None:
    count = 0
    never = asyncio.Event()

    @bus.on(address)
    async def stuck(n: int) -> None:
        nonlocal count
        count += 1
        emit("handling", count)
        await never.wait()  # never answered: the test kills this process

    async with bus:
        emit("ready", bus.node_id)
        await until_told_to_stop(LIFETIME)


ROLES = {"serve": serve, "client": client, "consume": consume, "hang": hang}


def main(argv: list[str]) -> None:
    """Run one role: ``ROLE URL NAMESPACE ADDRESS [ARG]``."""
    role, url, namespace, address, *rest = argv
    bus = EventBus(url, namespace=namespace, heartbeat=HEARTBEAT, stop_timeout=1.0)
    asyncio.run(ROLES[role](bus, address, rest[0] if rest else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
