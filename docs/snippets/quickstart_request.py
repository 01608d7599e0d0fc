import asyncio
from enum import Enum

from pydantic import BaseModel

from addrbus import EventBus, Message


class Address(str, Enum):
    CREATE_USER = "users.create"


class CreateUser(BaseModel):
    username: str
    email: str


class User(BaseModel):
    id: int
    username: str


bus = EventBus()


@bus.consumer(Address.CREATE_USER)
async def create_user(msg: Message[CreateUser]) -> User:
    print(f"handler: {msg.address} from node {msg.sender}")
    return User(id=1, username=msg.body.username)  # the return value is the reply


async def main() -> None:
    async with bus:  # start() ... stop()
        user = await bus.request(
            Address.CREATE_USER,
            CreateUser(username="ada", email="ada@example.com"),
            response_type=User,  # validate the reply as a User
            timeout=5.0,  # seconds; the default is 30, as in Vert.x
        )
        print(f"caller: got {user!r}")


asyncio.run(main())
