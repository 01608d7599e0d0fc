import asyncio

from cryptography.fernet import Fernet

from addrbus import EventBus

url = "memory://rotation-demo?serialize=1"
old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
nodes: dict[str, EventBus] = {}


async def start(name: str, keys: list[str]) -> None:
    """(Re)start one node with ``keys``: the first seals, all of them open."""
    if name in nodes:
        await nodes[name].stop()
    bus = EventBus(url, namespace="shop", shared_key=keys)
    bus.on(f"node.{name}", lambda: f"{name} ok")
    await bus.start()
    nodes[name] = bus


async def check(step: str) -> None:
    """Every node asks every other one: nothing may be lost at any step."""
    for name, bus in nodes.items():
        for other in nodes:
            if other != name:
                await bus.wait_for_handlers(f"node.{other}", 1, exactly=True)
                await bus.request(f"node.{other}", None, timeout=5)
    print(f"{step:<28} all pairs answered")


async def main() -> None:
    for name in "ABC":
        await start(name, [old])
    await check("before: [old]")
    # One node at a time; run each step on every node before the next step.
    for step, keys in (("1. add: [old, new]", [old, new]),
                       ("2. promote: [new, old]", [new, old]),
                       ("3. retire: [new]", [new])):
        for name in "ABC":
            await start(name, keys)
        await check(step)
    for bus in nodes.values():
        await bus.stop()


asyncio.run(main())
