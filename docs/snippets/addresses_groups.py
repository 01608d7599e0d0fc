import asyncio
from collections import Counter

from addrbus import EventBus

# Three nodes of one bus on the in-process hub "shop" (as three processes would be).
nodes = [EventBus("memory://shop") for _ in range(3)]
handled: Counter[str] = Counter()


def listen(bus: EventBus, name: str) -> None:
    @bus.on("orders.created", group="mailer")  # one mailer per order, on whichever node
    async def mail(order: int) -> None:
        handled[f"mailer on {name}"] += 1

    @bus.on("orders.created")  # ungrouped: every order, on every node
    async def count(order: int) -> None:
        handled[f"counter on {name}"] += 1


for bus, name in zip(nodes, ("a", "b", "c"), strict=True):
    listen(bus, name)


async def main() -> None:
    for bus in nodes:
        await bus.start()
    await nodes[0].wait_for_handlers("orders.created", 6, timeout=5)
    for order in range(30):
        await nodes[0].publish("orders.created", order)
    for bus in nodes:
        await bus.drain()
        await bus.stop()
    for name, count in sorted(handled.items()):
        print(f"{name}: {count}")


asyncio.run(main())
