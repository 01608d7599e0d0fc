from pydantic import BaseModel

from addrbus import EventBus


class Greet(BaseModel):
    name: str


bus = EventBus()  # in-process; with "udp://239.255.0.1:5000", every process on this host


@bus.on("greeter.hello")  # the handler gets the body, validated as its annotation says
async def hello(req: Greet) -> str:
    await bus.publish("greeter.greeted", req.name)  # every listener hears it
    return f"Hello, {req.name}!"  # the return value is the reply


@bus.on("greeter.greeted")
async def log_greeting(name: str) -> None:
    print(f"(log: {name} was greeted)")


async def main() -> None:
    print(await bus.request("greeter.hello", Greet(name="Ada"), timeout=5.0))
    await bus.drain()  # wait for the listeners instead of sleeping


bus.run(main)
