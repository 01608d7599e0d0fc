import asyncio

import addrbus as autobus


class Ping(autobus.Event):
    id: int


class Pong(Ping):  # a subclass is a different event: Ping subscribers never see it
    pass


async def main() -> None:
    # Two clients on one in-process hub act as two processes would on udp:// or redis://;
    # serialize=1 sends each event through JSON, as a network would.
    url = "memory://demo?serialize=1"
    listener = autobus.Client(url=url, namespace="shop")
    sender = autobus.Client(url=url, namespace="shop")

    @listener.subscribe(Ping)
    async def on_ping(ping: Ping) -> None:
        print(f"listener got {ping!r}")

    try:
        await listener.start()
        await sender.start()
        sender.publish(Ping(id=1))
        sender.publish(Pong(id=2))  # nobody subscribes to Pong
        # The underlying EventBus is there for what autobus lacks, such as request/reply.
        print(f"sender's bus: {sender.bus!r}")
    finally:
        await sender.stop()
        await listener.stop()


asyncio.run(main())
