from pydantic import BaseModel

from addrbus import EventBus


class User(BaseModel):
    id: int
    username: str


bus = EventBus()


@bus.on("users.created")  # publish: every handler at the address gets a copy
async def send_welcome(user: User) -> None:
    print(f"welcome: hello {user.username}")


@bus.on("users.created")
async def audit(user: User) -> None:
    print(f"audit: user #{user.id} created")


@bus.on("jobs.resize")  # send: exactly one handler in the whole bus gets it
async def resize(path: str) -> None:
    print(f"resize: {path}")


async def main() -> None:
    await bus.publish("users.created", User(id=1, username="ada"))
    await bus.send("jobs.resize", "avatars/ada.png")
    await bus.drain()  # wait until local handlers are done; no sleeps
    print("all handled")


bus.run(main)  # start the bus, run main(), stop the bus
