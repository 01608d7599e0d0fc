from addrbus import EventBus

bus = EventBus()


async def main() -> None:
    async with bus.stream("orders.placed", int) as orders:  # registered from here...
        for order_id in (101, 102, 103):
            await bus.publish("orders.placed", order_id)
        async for msg in orders:  # each item is a Message[int]
            print(f"order {msg.body} at {msg.address}")
            if msg.body == 103:
                break
    # ...to here: the stream is unregistered when the block is left
    print(f"still registered: {bus.nodes()[bus.node_id]}")


bus.run(main)
