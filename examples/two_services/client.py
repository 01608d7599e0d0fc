"""The client of the tutorial (docs/tutorial.md): ask the pricing service for quotes, then exit.

    python examples/two_services/client.py [URL]

Give it the URL (or ADDRBUS_URL) the service runs on. It may start first: it
waits up to ten seconds for a handler of the address before it asks.
"""

from __future__ import annotations

import asyncio
import sys

from pricing import QUOTE, QuoteRequest, make_bus

from addrbus import RecipientFailure

bus = make_bus()


async def main() -> None:
    async with bus:
        try:
            handlers = await bus.wait_for_handlers(QUOTE, timeout=10.0)
        except TimeoutError:
            sys.exit(f"client: no handler of {QUOTE} on {bus.describe()} within 10 s: is the service running?")
        print(f"client: {handlers} handler(s) of {QUOTE} on the bus")
        for item, quantity in [("apple", 3), ("pear", 2)]:
            quote = await bus.request(QUOTE, QuoteRequest(item=item, quantity=quantity), timeout=5.0)
            print(f"client: {quote.quantity} x {quote.item} = {quote.total_cents / 100:.2f} (node {quote.by})")
        try:
            await bus.request(QUOTE, QuoteRequest(item="kiwi", quantity=1), timeout=5.0)
        except RecipientFailure as exc:
            print(f"client: kiwi refused: {exc.message} (code {exc.code})")


if __name__ == "__main__":
    asyncio.run(main())
