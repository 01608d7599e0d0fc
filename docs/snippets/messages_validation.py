from pydantic import BaseModel, Field

from addrbus import EventBus, RecipientFailure


class Signup(BaseModel):
    username: str = Field(min_length=3)
    age: int


bus = EventBus()
seen: list[Signup] = []


@bus.on("users.signup")
async def signup(form: Signup) -> str:
    seen.append(form)
    return f"welcome {form.username}"


async def main() -> None:
    print(await bus.request("users.signup", {"username": "ada", "age": "36"}))  # "36" becomes 36
    try:
        await bus.request("users.signup", {"username": "x", "age": "hunter2"})
    except RecipientFailure as exc:
        print(f"code {exc.code}, {exc.remote_type}: {exc.message}")  # names fields, never values
    await bus.send("users.signup", {"username": "bob"})  # invalid send: dropped, counted, logged
    await bus.drain()
    print(f"handler ran {len(seen)} time(s); invalid bodies: {bus.stats()['failures.invalid_body']}")


bus.run(main)
