import asyncio

from addrbus import EventBus, Message

bus = EventBus()


@bus.consumer("sensors.*")  # one token: sensors.kitchen, not sensors.kitchen.temp
async def room(msg: Message[float]) -> None:
    print(f"sensors.*  heard {msg.address} = {msg.body}")


@bus.consumer("sensors.>")  # one or more tokens: both
async def anything(msg: Message[float]) -> None:
    print(f"sensors.>  heard {msg.address} = {msg.body}")


async def main() -> None:
    async with bus:
        await bus.publish("sensors.kitchen", 21.5)
        await bus.publish("sensors.kitchen.temp", 21.7)
        await bus.drain()
        try:
            await bus.publish("sensors.*", 0.0)
        except ValueError as exc:
            print(f"ValueError: {exc}")


asyncio.run(main())
