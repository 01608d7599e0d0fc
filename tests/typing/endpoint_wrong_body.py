"""Checked by mypy in tests/test_endpoint.py: lines marked ``# E`` must be errors, no others.

Never run: it only has to type-check (or fail to) as users' code would.
"""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from addrbus import EventBus
from addrbus._endpoint import Endpoint


class CreateUser(BaseModel):
    username: str


class User(BaseModel):
    id: int


CREATE_USER = Endpoint[CreateUser, User]("users.create")
PING = Endpoint[None, str]("ping")


async def callers(bus: EventBus) -> None:
    assert_type(await bus.request(CREATE_USER, CreateUser(username="ada")), User)
    assert_type(await bus.request(PING), str)
    assert_type(await bus.request("plain.address", 1, response_type=int), int)
    await bus.request(CREATE_USER, 42)  # E
    await bus.request(CREATE_USER, User(id=1))  # E
    await bus.request(CREATE_USER)  # E
