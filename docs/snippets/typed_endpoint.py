import asyncio

from pydantic import BaseModel

from addrbus import Endpoint, EventBus, Message


class CreateUser(BaseModel):
    username: str


class User(BaseModel):
    id: int
    username: str


class Api:  # a namespace for the service's addresses
    CREATE_USER = Endpoint[CreateUser, User]("users.create")  # a str, typed both ways
    USER_CREATED = Endpoint[User, None]("users.created")


bus = EventBus("memory://?serialize=1")  # through JSON, as on a network


@bus.consumer(Api.CREATE_USER)
async def create_user(msg: Message[CreateUser]) -> dict[str, object]:
    await bus.publish(Api.USER_CREATED, User(id=1, username=msg.body.username))
    return {"id": 1, "username": msg.body.username}  # the caller gets it validated as a User


@bus.on(Api.USER_CREATED)
async def welcome(user: User) -> None:
    print(f"welcome, {user.username}")


async def main() -> None:
    async with bus:
        user = await bus.request(Api.CREATE_USER, CreateUser(username="ada"), timeout=5.0)
        print(f"reply: {user!r}")  # a User: no response_type= needed
        await bus.drain()


asyncio.run(main())
