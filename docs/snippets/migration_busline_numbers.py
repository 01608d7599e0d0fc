import asyncio

from pydantic import BaseModel

from addrbus import EventBus, Message


class UserCreation(BaseModel):  # was: a @dataclass with JsonMessageMixin and to_json/from_json
    email: str
    password: str


async def main() -> None:
    # was: LocalPublisher(eventbus=LocalEventBus()) and LocalSubscriber(eventbus=LocalEventBus());
    # two buses on one in-process hub, as two services would be ("mqtt://host:1883" across machines).
    publisher = EventBus("memory://busline")
    subscriber = EventBus("memory://busline")

    # was: await subscriber.subscribe("numbers", handler=lambda topic, event: ...)
    @subscriber.consumer("numbers")
    async def on_number(msg: Message[int]) -> None:  # was: (topic, event); event.payload.value
        print(f"{msg.address} -> {msg.body}")

    @subscriber.on("users.created")  # the body alone, validated as the annotation says
    async def on_user(user: UserCreation) -> None:
        print(f"new user {user.email}")

    async with publisher, subscriber:  # was: await asyncio.gather(client.connect(), ...)
        # was: async for (topic, event) in subscriber.inbound_events
        async with subscriber.stream("numbers", int) as numbers:
            for n in range(3):
                await publisher.publish("numbers", n)  # was: Int64Message(n), wrapped for you
            await publisher.publish("users.created", UserCreation(email="ada@example.org", password="x"))
            for _ in range(3):
                msg = await numbers.get(timeout=5)
                # was: event.identifier, event.publisher_identifier, event.timestamp
                print(f"iterator got {msg.body}, from the publisher: {msg.sender == publisher.node_id}")
        await subscriber.drain()  # wait for the handlers, instead of sleeping


asyncio.run(main())
