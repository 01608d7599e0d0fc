"""A user service on addrbus: request/reply, publish, send and typed failures.

Run it with ``make demo``. Everything here runs in one process on the default
``memory://`` bus. Give ``EventBus`` a URL instead ("udp://239.255.0.1:5000",
"redis://localhost:6379/0") and the same handlers serve other processes.
"""

from __future__ import annotations

import itertools
import logging
import sys
from enum import Enum

from pydantic import BaseModel, Field

from addrbus import EventBus, Message, RecipientFailure


class Address(str, Enum):
    CREATE_USER = "users.create"  # request/reply: one consumer answers
    GET_USER = "users.get"  # request/reply, with a 404 for unknown ids
    USER_CREATED = "users.created"  # publish: every listener hears it
    SEND_EMAIL = "email.send"  # send: one consumer, no reply


class CreateUser(BaseModel):
    username: str = Field(min_length=1, max_length=32)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class User(BaseModel):
    id: int
    username: str
    email: str


class Email(BaseModel):
    to: str
    subject: str


bus = EventBus()  # memory:// - in-process, no server
users: dict[int, User] = {}  # a stand-in for a database
new_ids = itertools.count(1)


@bus.consumer(Address.CREATE_USER)
async def create_user(msg: Message[CreateUser]) -> User:
    user = User(id=next(new_ids), username=msg.body.username, email=msg.body.email)
    users[user.id] = user
    print(f"  [users]   created #{user.id} {user.username}")
    await bus.publish(Address.USER_CREATED, user)  # tell whoever listens; no reply expected
    return user  # the return value is the reply


@bus.consumer(Address.GET_USER)
async def get_user(msg: Message[int]) -> User | None:
    user = users.get(msg.body)
    if user is None:
        await msg.fail(404, f"no user with id {msg.body}")  # the requester gets RecipientFailure
    return user


@bus.on(Address.USER_CREATED)  # @bus.on hands the handler the body, typed by its annotation
async def send_welcome(user: User) -> None:
    print(f"  [welcome] queueing a welcome email for {user.username}")
    await bus.send(Address.SEND_EMAIL, Email(to=user.email, subject=f"Welcome, {user.username}!"))


@bus.on(Address.USER_CREATED)
async def audit(user: User) -> None:
    print(f"  [audit]   user #{user.id} joined")


@bus.on(Address.SEND_EMAIL)
async def mailer(email: Email) -> None:
    print(f"  [mailer]  to {email.to}: {email.subject!r}")


async def main() -> None:
    print("1. request users.create (ada) - the consumer replies, two listeners hear users.created")
    ada = await bus.request(
        Address.CREATE_USER, CreateUser(username="ada", email="ada@example.com"), response_type=User, timeout=5.0
    )
    await bus.drain()  # wait until every local handler is done: no sleeps needed
    print(f"   reply: {ada!r}")

    print("2. request users.get - a plain int body, a typed reply")
    found = await bus.request(Address.GET_USER, ada.id, response_type=User)
    print(f"   reply: {found.username} <{found.email}>")

    print("3. request users.get for an unknown id - the consumer fails it with 404")
    try:
        await bus.request(Address.GET_USER, 42)
    except RecipientFailure as exc:
        print(f"   RecipientFailure: code={exc.code} message={exc.message!r}")

    print("4. request users.create with an invalid body - it never reaches the handler")
    try:
        await bus.request(Address.CREATE_USER, {"username": "", "email": "not-an-email"})
    except RecipientFailure as exc:
        print(f"   RecipientFailure: code={exc.code}")
        print(f"   {exc.message}")

    print("5. send email.send - fire and forget, one consumer")
    await bus.send(Address.SEND_EMAIL, Email(to="ops@example.com", subject="daily report"))
    await bus.drain()

    stats = bus.stats()
    print(
        f"done: {stats['requests']} requests, {stats['published']} published, {stats['sent']} sent, "
        f"{stats['delivered']} delivered"
    )


if __name__ == "__main__":
    # addrbus logs to the "addrbus" logger: show its warnings in line with the output.
    logging.basicConfig(stream=sys.stdout, format="  [log]     %(levelname)s %(message)s")
    bus.run(main)  # start the bus, run main(), stop the bus
