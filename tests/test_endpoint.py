"""Endpoint[Req, Resp]: a str address whose reply type the bus validates, and mypy checks."""

from __future__ import annotations

import copy
import pickle
import re
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from addrbus import EventBus, Message, RecipientFailure
from addrbus._addresses import address_of
from addrbus._endpoint import Endpoint, TypedAddress

WAIT = 5.0
ROOT = Path(__file__).resolve().parent.parent


class CreateUser(BaseModel):
    username: str


class User(BaseModel):
    id: int
    username: str


# -- the type ---------------------------------------------------------------------


def test_an_endpoint_is_a_typed_str_address() -> None:
    create = Endpoint[CreateUser, User]("users.create")
    assert isinstance(create, str)
    assert isinstance(create, TypedAddress)
    assert isinstance(create, Endpoint)
    assert create == "users.create"
    assert hash(create) == hash("users.create")
    assert type(str(create)) is str
    assert f"{create}" == "users.create"
    assert create.__request_type__ is CreateUser
    assert create.__response_type__ is User
    assert repr(create) == "Endpoint[CreateUser, User]('users.create')"
    assert address_of(create) == "users.create"
    assert type(address_of(create)) is str


def test_endpoint_classes_are_made_once() -> None:
    assert Endpoint[CreateUser, User] is Endpoint[CreateUser, User]
    assert len({Endpoint[CreateUser, User], Endpoint[User, CreateUser]}) == 2
    assert issubclass(Endpoint[CreateUser, User], Endpoint)


def test_a_bare_endpoint_names_no_types() -> None:
    plain: Endpoint[Any, Any] = Endpoint("users.list")
    assert plain.__response_type__ is None
    assert plain.__request_type__ is None
    assert repr(plain) == "Endpoint('users.list')"


def test_generic_aliases_stay_generic() -> None:
    r = TypeVar("r")
    alias = Endpoint[Any, r]
    assert typing.get_args(alias) == (Any, r)
    with pytest.raises(TypeError):
        Endpoint[CreateUser]  # type: ignore[misc]  # noqa: B018 - the subscription is what raises


def test_endpoints_survive_pickle_and_copy() -> None:
    create = Endpoint[CreateUser, User]("users.create")
    for clone in (pickle.loads(pickle.dumps(create)), copy.deepcopy(create), copy.copy(create)):
        assert clone == create
        assert type(clone) is type(create)
    assert pickle.loads(pickle.dumps(Endpoint("x"))) == "x"


def test_a_subclass_of_a_typed_endpoint_keeps_its_types() -> None:
    class CreateUserEndpoint(Endpoint[CreateUser, User]):
        __slots__ = ()

    create = CreateUserEndpoint("users.create")
    assert create.__response_type__ is User
    assert type(copy.deepcopy(create)) is CreateUserEndpoint


# -- on the bus -------------------------------------------------------------------


async def test_request_validates_the_reply_without_response_type(make_bus: Callable[..., EventBus],
                                                                  address: str) -> None:
    create = Endpoint[CreateUser, User](address)
    bus = make_bus("memory://?serialize=1")

    @bus.consumer(create)
    async def handle(msg: Message[CreateUser]) -> dict[str, Any]:
        return {"id": 7, "username": msg.body.username}  # a dict: only the Endpoint makes it a User

    await bus.start()
    user = await bus.request(create, CreateUser(username="ada"), timeout=WAIT)
    assert user == User(id=7, username="ada")
    reply = await bus.request_message(create, CreateUser(username="bob"), timeout=WAIT)
    assert reply.body == User(id=7, username="bob")


async def test_a_reply_of_the_wrong_type_is_a_recipient_failure(make_bus: Callable[..., EventBus],
                                                                 address: str) -> None:
    create = Endpoint[CreateUser, User](address)
    bus = make_bus()
    bus.on(create, lambda body: {"nope": True})
    await bus.start()
    with pytest.raises(RecipientFailure, match="did not validate"):
        await bus.request(create, CreateUser(username="ada"), timeout=WAIT)


async def test_an_explicit_response_type_wins(make_bus: Callable[..., EventBus], address: str) -> None:
    create = Endpoint[CreateUser, User](address)
    bus = make_bus()
    bus.on(create, lambda body: {"id": 1, "username": "ada"})
    await bus.start()
    reply = await bus.request(create, CreateUser(username="ada"), response_type=dict[str, Any], timeout=WAIT)
    assert reply == {"id": 1, "username": "ada"}


@pytest.mark.parametrize("url", ["memory://", "memory://?serialize=1"])
async def test_an_endpoint_works_wherever_an_address_does(make_bus: Callable[..., EventBus], address: str,
                                                          url: str) -> None:
    news = Endpoint[User, None](address)
    bus = make_bus(url)
    got: list[tuple[str, User]] = []

    @bus.on(news)
    async def on_news(user: User) -> None:
        got.append(("on", user))

    @bus.consumer(news)
    async def consume(msg: Message[User]) -> None:
        assert msg.address == address
        assert type(msg.address) is str
        got.append(("consumer", msg.body))

    await bus.start()
    assert await bus.wait_for_handlers(address, 2, timeout=WAIT) == 2
    async with bus.stream(news, User) as messages:
        ada = User(id=1, username="ada")
        await bus.publish(news, ada)
        first = await anext(aiter(messages))
        assert first.body == ada
    await bus.send(news, ada)  # round-robin: one handler each
    await bus.send(address, ada)  # the plain string is the same address
    await bus.drain(WAIT)
    assert sorted(kind for kind, _ in got) == ["consumer", "consumer", "on", "on"]
    assert all(user == ada for _, user in got)


# -- mypy -------------------------------------------------------------------------

TYPING_CASE = ROOT / "tests" / "typing" / "endpoint_wrong_body.py"


def _request_is_overloaded() -> bool:
    return bool(typing.get_overloads(EventBus.request))


@pytest.mark.slow
@pytest.mark.xfail(not _request_is_overloaded(),
                   reason="EventBus.request needs the Endpoint overloads (see docs/typed-addresses.md)")
def test_mypy_reports_a_wrong_body_and_types_the_reply(tmp_path: Path) -> None:
    """Lines marked ``# E`` in the case file, and only those, are mypy errors."""
    lines = TYPING_CASE.read_text(encoding="utf-8").splitlines()
    expected = {n for n, line in enumerate(lines, 1) if line.rstrip().endswith("# E")}
    assert expected
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy"), "--no-error-summary", TYPING_CASE.relative_to(ROOT).as_posix()],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    pattern = re.compile(rf"^{re.escape(TYPING_CASE.relative_to(ROOT).as_posix())}:(\d+): error:")
    reported = {int(m.group(1)) for m in map(pattern.match, result.stdout.splitlines()) if m}
    assert reported == expected, result.stdout + result.stderr
