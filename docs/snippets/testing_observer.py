import asyncio
from typing import Any

from addrbus import EventBus
from addrbus.testing import Recorder


async def main() -> None:
    async with EventBus("memory://?serialize=1") as bus:
        bus.on("users.created", lambda user: None)
        seen: list[tuple[str, str]] = []

        def observe(kind: str, address: str, body: Any, headers: dict[str, str]) -> None:
            seen.append((kind, address))  # called before delivery, handled or not

        remove = bus.add_observer(observe)
        with Recorder(bus, "users.created") as recorder:  # built on add_observer too
            await bus.publish("users.created", {"id": 1})
            await bus.publish("audit.log", "user 1 created")  # nobody handles it: still observed
        remove()
        await bus.publish("users.created", {"id": 2})  # neither observer sees this one

    assert seen == [("publish", "users.created"), ("publish", "audit.log")]
    assert recorder.published("users.created") == [{"id": 1}]
    print(f"observed {seen}; recorded {recorder.calls}")


if __name__ == "__main__":
    asyncio.run(main())
