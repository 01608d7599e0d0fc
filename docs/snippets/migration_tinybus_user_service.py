import asyncio
import uuid
from enum import Enum

from pydantic import BaseModel

from addrbus import EventBus, Message  # was: from tinybus import EventBus, Message


class Address(str, Enum):  # unchanged: str Enum addresses work as they did
    CREATE_USER = "create_user"
    GET_USER = "get_user"


class User(BaseModel):
    user_id: uuid.UUID
    username: str
    email: str


class CreateUserRequest(BaseModel):
    username: str
    email: str


class CreateUserResponse(BaseModel):
    user: User


class GetUserResponse(BaseModel):
    user: User


class UserService:
    def __init__(self, event_bus: EventBus) -> None:
        self._event_bus = event_bus
        self._users: dict[uuid.UUID, User] = {}
        # Unchanged: consumer(address, handler) registers a bound method.
        self._event_bus.consumer(Address.CREATE_USER, self._create_user)
        self._event_bus.consumer(Address.GET_USER, self._get_user)

    async def _create_user(self, message: Message[CreateUserRequest]) -> CreateUserResponse:
        request = message.body  # validated as a CreateUserRequest before this runs
        user = User(user_id=uuid.uuid4(), username=request.username, email=request.email)
        self._users[user.user_id] = user
        await self._event_bus.publish("user.created", user)
        return CreateUserResponse(user=user)  # the return value is the reply

    async def _get_user(self, message: Message[uuid.UUID]) -> GetUserResponse | None:
        found = self._users.get(message.body)
        return GetUserResponse(user=found) if found is not None else None  # None is a valid reply


async def main() -> None:
    event_bus = EventBus()  # memory://, as TinyBus; "udp://..." or "redis://..." to go across processes
    UserService(event_bus)

    @event_bus.on("user.created")
    async def on_user_created(user: User) -> None:
        print(f"User created: {user.username}")

    async with event_bus:  # new: a bus is started before use, and stopped after
        created = await event_bus.request(
            Address.CREATE_USER,
            CreateUserRequest(username="john", email="john@example.com"),
            response_type=CreateUserResponse,  # new, optional: validate the reply
            timeout=5.0,  # new, optional: every request ends by its timeout (default 30 s)
        )
        found = await event_bus.request(Address.GET_USER, created.user.user_id, response_type=GetUserResponse | None)
        print(f"Retrieved user: {found.user.username if found else None}")
        missing = await event_bus.request(Address.GET_USER, uuid.uuid4(), response_type=GetUserResponse | None)
        print(f"Unknown id: {missing}")


asyncio.run(main())
