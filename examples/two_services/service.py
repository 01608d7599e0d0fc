"""The pricing service of the tutorial (docs/tutorial.md): it answers quotes until it is stopped.

    python examples/two_services/service.py [URL]

URL (or ADDRBUS_URL) names the bus: udp://239.255.0.1:5000 by default, or
redis://localhost:6379/0 across machines. Start client.py with the same URL, in
another terminal or on another machine. Ctrl-C or SIGTERM stops it gracefully:
running quotes finish, and the other nodes are told it left.
"""

from __future__ import annotations

import asyncio
import signal

from pricing import QUOTE, Quote, QuoteRequest, make_bus

from addrbus import Message

PRICES = {"apple": 50, "pear": 80, "plum": 35}  # cents; a stand-in for a database

bus = make_bus()


@bus.consumer(QUOTE)
async def quote(msg: Message[QuoteRequest]) -> Quote | None:
    price = PRICES.get(msg.body.item)
    if price is None:
        await msg.fail(404, f"no price for {msg.body.item!r}")  # the client gets RecipientFailure
        return None
    return Quote(item=msg.body.item, quantity=msg.body.quantity, total_cents=price * msg.body.quantity,
                 by=bus.node_id)


async def main() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with bus:  # start() returns once this node knows the others, and they know it
        print(f"service: node {bus.node_id} answers {QUOTE} on {bus.describe()}", flush=True)
        await stopping.wait()
    # Leaving `async with` ran stop(): running handlers finished (up to stop_timeout), then a bye.
    print("service: stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
