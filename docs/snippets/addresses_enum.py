from enum import Enum

from addrbus import EventBus


class Address(str, Enum):  # a str Enum: one place to read every address a service uses
    GET_PRICE = "prices.get"
    PRICE_CHANGED = "prices.changed"


bus = EventBus()


@bus.on(Address.GET_PRICE)
async def get_price(sku: str) -> int:
    return {"apple": 3, "pear": 4}[sku]


async def main() -> None:
    # An Enum member and its string value are the same address.
    print(await bus.request(Address.GET_PRICE, "apple"), await bus.request("prices.get", "pear"))
    for bad in ["", "   ", "prices\n.get", "x" * 256]:
        try:
            await bus.publish(bad, None)
        except ValueError as exc:  # raised before anything is sent
            print(f"{bad[:10]!r}: ValueError: {exc}")


bus.run(main)
