from addrbus import EventBus

bus = EventBus()


@bus.consumer("prices.quote")
async def quote(symbol: str) -> float:
    return 101.5  # never suspends: on Python 3.12+ it answers within request()


async def main() -> None:
    print(await bus.request("prices.quote", "ACME"))


bus.run(main, uvloop=True)  # pip install 'addrbus[speed]'; ConfigError if uvloop is missing
