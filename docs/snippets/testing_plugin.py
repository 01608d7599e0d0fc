"""test_signup.py: a service tested with the addrbus pytest plugin's `bus` and `recorder` fixtures."""

import pytest
from pydantic import BaseModel

from addrbus import EventBus
from addrbus.testing import Recorder

pytestmark = pytest.mark.anyio  # anyio's pytest plugin (it comes with addrbus) runs these tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the bus fixture is an asyncio bus


class User(BaseModel):
    id: int
    email: str


def add_signup_service(bus: EventBus) -> None:
    """The code under test: sign a user up, announce it and queue a welcome email."""

    @bus.consumer("users.signup")
    async def signup(email: str) -> User:
        user = User(id=1, email=email)
        await bus.publish("users.created", user)  # nobody listens in this test: still recorded
        await bus.send("email.send", {"to": email, "template": "welcome"})
        return user

    @bus.on("email.send")
    async def mailer(mail: dict[str, str]) -> None:
        pass  # a stand-in for the mail service


async def test_signup_announces_the_user_and_queues_a_welcome(bus: EventBus, recorder: Recorder) -> None:
    add_signup_service(bus)
    user = await bus.request("users.signup", "ada@example.com", response_type=User, timeout=5.0)
    assert recorder.requested("users.signup") == ["ada@example.com"]
    assert recorder.published("users.created") == [user]  # bodies as they were passed
    assert recorder.sent("email.send") == [{"to": "ada@example.com", "template": "welcome"}]
    assert [(call.kind, call.address) for call in recorder.calls] == [
        ("request", "users.signup"), ("publish", "users.created"), ("send", "email.send"),
    ]


async def test_wait_for_what_a_handler_sends_later(bus: EventBus, recorder: Recorder) -> None:
    add_signup_service(bus)
    await bus.send("users.signup", "grace@example.com")  # returns before the handler runs
    (call,) = await recorder.wait_for("send", "email.send", timeout=5.0)  # no sleep
    assert call.body["to"] == "grace@example.com" and call.headers == {}


if __name__ == "__main__":
    # Under pytest, `pytest test_signup.py` is all it takes; run as a script, this runs that.
    import subprocess
    import sys

    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]))
