from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from addrbus import EventBus


class Point(BaseModel):
    x: int
    y: int


bus = EventBus()


@bus.on("types.uuid")
async def uuid_version(value: UUID) -> int | None:
    return value.version


@bus.on("types.when")
async def weekday(when: datetime) -> str:
    return when.strftime("%A")


@bus.on("types.sum")
async def total(values: list[int]) -> int:
    return sum(values)


@bus.on("types.shape")
async def describe(shape: Point | list[Point] | None) -> str:
    return f"{type(shape).__name__}: {shape}"


async def main() -> None:
    # Bodies are checked as a network transport would carry them: JSON-shaped
    # values are validated into the annotated type (pydantic's lax mode).
    print(await bus.request("types.uuid", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"))
    print(await bus.request("types.when", "2026-01-02T10:00:00Z"))
    print(await bus.request("types.sum", [1, 2, "3"]))
    print(await bus.request("types.shape", {"x": 1, "y": 2}))
    print(await bus.request("types.shape", [Point(x=0, y=0)]))
    print(await bus.request("types.shape", None))


bus.run(main)
