"""Busline's "numbers" example on addrbus, over an MQTT broker.

A Busline program makes an ``MqttPublisher`` and an ``MqttSubscriber``, connects
them, subscribes a handler to a topic and publishes 0..9 on it. Here the same
program has two buses on one broker (two services, say): one publishes, the
other has a handler subscriber and an ``async for`` subscriber on the address.

The broker is ``$ADDRBUS_MQTT_URL``, mqtt://127.0.0.1:1883 by default (the test
suite starts a private mosquitto and passes its URL). See docs/migration-busline.md.
"""

from __future__ import annotations

import asyncio
import os

from addrbus import EventBus, Message

URL = os.environ.get("ADDRBUS_MQTT_URL", "mqtt://127.0.0.1:1883")
NUMBERS = "numbers"  # a Busline topic is an addrbus address


async def main() -> None:
    publisher = EventBus(URL, namespace="busline-demo")
    subscriber = EventBus(URL, namespace="busline-demo")
    handled: list[int] = []
    all_handled = asyncio.Event()

    # Busline: await subscriber.subscribe("numbers", handler=lambda topic, event: ...)
    @subscriber.consumer(NUMBERS)
    async def on_number(msg: Message[int]) -> None:
        print(f"handler:  {msg.address} -> {msg.body} (from node {msg.sender[:8]})")
        handled.append(msg.body)
        if len(handled) == 10:
            all_handled.set()

    async with publisher, subscriber:
        # Busline: async for (topic, event) in subscriber.inbound_events
        async with subscriber.stream(NUMBERS, int) as numbers:
            # The handler and the stream: two listeners, learnt by the publisher's bus.
            await publisher.wait_for_handlers(NUMBERS, 2, timeout=10)
            for n in range(10):
                await publisher.publish(NUMBERS, n)  # Busline: await publisher.publish("numbers", n)
            streamed = [(await numbers.get(timeout=10)).body for _ in range(10)]
        print(f"iterator: {streamed}")
        await asyncio.wait_for(all_handled.wait(), 10)
        print(f"handled:  {sorted(handled)}")


if __name__ == "__main__":
    asyncio.run(main())
