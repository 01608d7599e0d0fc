import asyncio

from pydantic import BaseModel

from addrbus import EventBus


class Quote(BaseModel):
    sku: str
    price: int


async def ask(url: str) -> None:
    server, client = EventBus(url), EventBus(url)

    @server.on("quotes.get")
    async def quote(sku: str) -> Quote:
        return Quote(sku=sku, price=3)

    async with server, client:
        raw = await client.request("quotes.get", "apple")
        typed = await client.request("quotes.get", "apple", response_type=Quote)
    print(f"{url:28} without response_type: {raw!r:40} with: {typed!r}")


async def main() -> None:
    await ask("memory://quotes")  # in-process: the reply object itself
    await ask("memory://quotes?serialize=1")  # as over the network: JSON-shaped unless typed


asyncio.run(main())
