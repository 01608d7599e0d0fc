import asyncio
import urllib.request

from prometheus_client import start_http_server

from addrbus import EventBus
from addrbus.prometheus import register


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def main() -> None:
    async with EventBus("memory://") as bus:
        metrics = register(bus)  # into prometheus_client.REGISTRY; times every request
        bus.on("prices.quote", lambda item: {"item": item, "price": 42})
        await bus.request("prices.quote", "apple")

        server, _ = start_http_server(0, addr="127.0.0.1")  # port 0: any free port
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = await asyncio.to_thread(scrape, url)  # what Prometheus reads
        server.shutdown()
        server.server_close()
        metrics.unregister()

    for line in text.splitlines():
        if line.startswith(("addrbus_requests_total", "addrbus_request_duration_seconds_count")):
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
