import asyncio

from addrbus import EventBus, NoHandlers

# Two workers and a client: three nodes of one bus on the in-process hub "farm".
workers = [EventBus("memory://farm"), EventBus("memory://farm")]
client = EventBus("memory://farm")


def serve(bus: EventBus, name: str) -> None:
    @bus.on("cache.flush")
    async def flush(region: str) -> str:
        return f"{name} flushed {region}"


serve(workers[0], "worker-0")
serve(workers[1], "worker-1")


async def main() -> None:
    async with workers[0], workers[1], client:
        await client.wait_for_handlers("cache.flush", 2, timeout=5)
        for worker in workers:  # each node in turn, not whichever round-robin picks
            print(await client.request("cache.flush", "eu", node=worker.node_id, timeout=5))
        try:
            await client.send("cache.flush", "eu", node=client.node_id)
        except NoHandlers as exc:
            print(f"NoHandlers: {exc}")


asyncio.run(main())
