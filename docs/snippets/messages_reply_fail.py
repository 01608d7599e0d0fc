from addrbus import EventBus, Message, RecipientFailure

bus = EventBus()
stock = {"apple": 3}


@bus.consumer("stock.take")
async def take(msg: Message[str]) -> None:
    if stock.get(msg.body, 0) == 0:
        await msg.fail(409, f"{msg.body} is out of stock")  # the requester gets RecipientFailure
        return
    stock[msg.body] -= 1
    await msg.reply(stock[msg.body])  # answer now; only the first answer counts
    print(f"handler: still running after the reply ({msg.body})")


async def main() -> None:
    left = await bus.request("stock.take", "apple")
    print(f"caller: {left} apples left")
    reply = await bus.request_message("stock.take", "apple")  # the whole reply Message
    print(f"caller: {reply.body} left, answered by node {reply.sender}")
    try:
        await bus.request("stock.take", "pear")
    except RecipientFailure as exc:
        print(f"caller: RecipientFailure code={exc.code} message={exc.message!r}")
    await bus.drain()


bus.run(main)
