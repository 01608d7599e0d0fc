import asyncio

from addrbus import EventBus, NoHandlers

# Two nodes of one bus, on the in-process hub "lab" (as two processes on udp:// or redis://).
worker = EventBus("memory://lab")
watcher = EventBus("memory://lab")


@worker.on("jobs.run")
async def run(job: int) -> None:
    await worker.publish("jobs.done", {"id": job, "ok": job % 2 == 1})


async def main() -> None:
    async with worker, watcher:
        try:
            await watcher.publish("audit", "started", require_handlers=True)
        except NoHandlers:
            print("nobody listens to audit")
        print(f"consumers: {watcher.consumers()}")

        # The next message at jobs.done for which where() holds: job 7's result.
        waiting = asyncio.ensure_future(watcher.wait_for("jobs.done", timeout=5, where=lambda m: m.body["id"] == 7))
        await worker.wait_for_handlers("jobs.done", 1, timeout=5)  # the watcher is listening now
        for job in (5, 6, 7, 8):
            await watcher.send("jobs.run", job)
        print(f"job 7 done: {(await waiting).body}")

        # A stream that ends by itself after two messages.
        async with watcher.stream("jobs.done", limit=2) as results:
            await worker.wait_for_handlers("jobs.done", 1, timeout=5)
            for job in (9, 10):
                await watcher.send("jobs.run", job)
            print(f"two more: {[msg.body['id'] async for msg in results]}")


asyncio.run(main())
