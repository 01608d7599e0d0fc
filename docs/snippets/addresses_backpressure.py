import asyncio

from addrbus import EventBus, RecipientFailure

bus = EventBus()
release = asyncio.Event()
running = 0


# At most 2 runs at once while suspended; at most 3 messages waiting to start;
# past that, drop new messages (the default, "wait", would make the caller wait).
@bus.on("reports.build", concurrency=2, max_queue=3, overflow="drop_new")
async def build_report(n: int) -> int:
    global running
    running += 1
    print(f"start {n} ({running} running)")
    await release.wait()  # suspended on "I/O": the next message may start meanwhile
    running -= 1
    return n


async def main() -> None:
    requests = [asyncio.create_task(bus.request("reports.build", n, timeout=5.0)) for n in range(6)]
    await asyncio.sleep(0.05)  # for the demo only: let the first runs start and block
    release.set()
    for n, outcome in enumerate(await asyncio.gather(*requests, return_exceptions=True)):
        if isinstance(outcome, RecipientFailure):
            print(f"request {n}: RecipientFailure code={outcome.code}")
        else:
            print(f"request {n}: replied {outcome}")
    stats = bus.stats()
    print(f"delivered={stats['delivered']} dropped.overflow={stats['dropped.overflow']}")


bus.run(main)
