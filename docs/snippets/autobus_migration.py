import asyncio

import addrbus as autobus  # was: import autobus


class SomethingHappened(autobus.Event):  # a pydantic model, as in autobus
    id: int
    name: str


@autobus.subscribe(SomethingHappened)
def handle_something(event: SomethingHappened) -> None:
    # A plain function runs in a worker thread, one event after another, in order.
    print(f"handled {event.name} #{event.id}")


@autobus.schedule(autobus.every(0.1).seconds)
async def tick() -> None:
    autobus.publish(SomethingHappened(id=99, name="tick"))


async def main() -> None:
    await autobus.start(url="memory://")  # no url: UDP multicast, as autobus 2
    for n in range(3):
        autobus.publish(SomethingHappened(id=n, name="signup"))  # no await, as autobus
    await tick.job.wait(runs=1)  # the job ran once (and published)
    await autobus.stop()  # everything published before stop() is handled first


asyncio.run(main())
