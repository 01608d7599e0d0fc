import threading
import time

from addrbus import EventBus, Message

bus = EventBus()


@bus.consumer("clock.echo")  # consumer: an unannotated or Message[T] parameter gets the Message
async def echo(msg: Message[str]) -> str:
    return f"{msg.body} (id={msg.id}, request={msg.is_request}, headers={msg.headers})"


@bus.on("clock.shout")  # on: the parameter gets the body, validated as its annotation
async def shout(text: str) -> str:
    return text.upper()


@bus.on("clock.now")  # no parameter: the handler only needs to know that something arrived
async def now() -> float:
    return 1_700_000_000.0


@bus.on("clock.slow")  # a plain def runs in a worker thread, never on the event loop
def slow(seconds: float) -> str:
    time.sleep(seconds)  # blocking is fine here
    return threading.current_thread().name


async def main() -> None:
    print(await bus.request("clock.echo", "hi", headers={"trace": "t-1"}))
    print(await bus.request("clock.shout", "hi"))
    print(await bus.request("clock.now"))
    print(await bus.request("clock.slow", 0.01))


bus.run(main)
