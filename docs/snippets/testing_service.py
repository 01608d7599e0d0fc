import asyncio
import itertools
import os

from addrbus import EventBus, NoHandlers

_ids = itertools.count()


def unique(prefix: str) -> str:
    """Return a name no other test uses: for hubs, namespaces and addresses."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def add_welcome_service(bus: EventBus, outbox: list[str]) -> None:
    """The code under test: greet every new user by email."""

    @bus.on("users.created")
    async def welcome(username: str) -> None:
        await bus.send("email.send", f"Welcome, {username}!")

    @bus.on("email.send")
    async def mailer(text: str) -> None:
        outbox.append(text)


async def test_new_user_gets_a_welcome_email() -> None:
    # Two nodes on a private hub; serialize=1 sends every message through the
    # wire codec, so a body that would not survive the network fails here too.
    url = f"memory://{unique('hub')}?serialize=1"
    service, probe = EventBus(url), EventBus(url)
    outbox: list[str] = []
    add_welcome_service(service, outbox)
    async with service, probe:
        await probe.publish("users.created", "ada")
        await service.drain()  # every handler on the service node has finished: no sleep
    assert outbox == ["Welcome, ada!"]


async def test_nobody_else_answers_a_unique_address() -> None:
    address = unique("echo")  # a shared bus: no other test has a handler here
    async with EventBus() as bus:

        @bus.on(address)
        async def echo(text: str) -> str:
            return text * 2

        assert await bus.request(address, "ab", timeout=5.0) == "abab"
        echo.registration.unregister()  # type: ignore[attr-defined]
        try:
            await bus.request(address, "ab", timeout=5.0)
        except NoHandlers:
            pass  # under pytest: with pytest.raises(NoHandlers)
        else:
            raise AssertionError("expected NoHandlers")


if __name__ == "__main__":
    # Under pytest, mark these with @pytest.mark.anyio (or asyncio) instead.
    asyncio.run(test_new_user_gets_a_welcome_email())
    asyncio.run(test_nobody_else_answers_a_unique_address())
    print("2 tests passed")
