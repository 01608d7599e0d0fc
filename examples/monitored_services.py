"""Two services and the monitor of `addrbus monitor`, in one process, for a few seconds.

Run: python examples/monitored_services.py [SECONDS]

Open the address it prints to see the page; it also prints what /state.json says.
Across processes the same is `addrbus monitor --url URL` beside your services.
"""

import asyncio
import json
import sys
import urllib.request

from addrbus import EventBus
from addrbus.monitor import serve

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


async def main() -> None:
    orders, shop, watcher = (EventBus("memory://shop") for _ in range(3))

    @orders.on("orders.create")
    async def create(qty: int) -> int:
        return qty * 2

    async with orders, shop, watcher:
        urls: list[str] = []
        monitor = asyncio.create_task(serve(watcher, "127.0.0.1", 0, 0.5, urls.append))
        loop = asyncio.get_running_loop()
        end = loop.time() + SECONDS
        while loop.time() < end:  # the shop's traffic, for the page to show
            await shop.request("orders.create", 21)
            await asyncio.sleep(0.01)
        print(f"the page was at {urls[0]}")
        raw = await asyncio.to_thread(lambda: urllib.request.urlopen(urls[0] + "state.json", timeout=5).read())
        state = json.loads(raw)
        for address in state["addresses"]:
            print(f"{address['address']}: {address['handlers']} handler(s), {address['rate']:.0f} msgs/s")
        print(f"{len(state['nodes'])} nodes, request latency p50 {state['latency']['p50'] * 1000:.2f} ms")
        monitor.cancel()


asyncio.run(main())
