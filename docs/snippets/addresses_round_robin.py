import asyncio
from collections import Counter

from addrbus import EventBus

# Three buses on the named in-process hub "shop" are three nodes of one bus,
# as three processes on "udp://..." or "redis://..." would be.
worker_a = EventBus("memory://shop")
worker_b = EventBus("memory://shop")
client = EventBus("memory://shop")
handled: Counter[str] = Counter()


@worker_a.on("images.resize")
async def resize_a(path: str) -> None:
    handled[f"a {path}"] += 1


@worker_b.on("images.resize")  # node b has two handlers: it gets twice node a's share
async def resize_b1(path: str) -> None:
    handled[f"b1 {path}"] += 1


@worker_b.on("images.resize")
async def resize_b2(path: str) -> None:
    handled[f"b2 {path}"] += 1


async def main() -> None:
    async with worker_a, worker_b, client:
        for _ in range(30):
            await client.send("images.resize", "sent")  # one handler each time, round-robin
        await client.publish("images.resize", "published")  # every handler, once each
        await worker_a.drain()
        await worker_b.drain()
    for key, count in sorted(handled.items()):
        print(f"{key}: {count}")


asyncio.run(main())
