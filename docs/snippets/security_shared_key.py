import os

from cryptography.fernet import Fernet
from pydantic import SecretStr

from addrbus import EventBus

# In production: export ADDRBUS_SHARED_KEY="$(addrbus keygen)" on every node.
key = SecretStr(os.environ.get("ADDRBUS_SHARED_KEY") or Fernet.generate_key().decode())

# Two nodes of one bus; serialize=1 sends every frame through the codec and the
# sealer, exactly as udp:// and redis:// do.
url = "memory://security-demo?serialize=1"
billing = EventBus(url, namespace="shop", shared_key=key)
web = EventBus(url, namespace="shop", shared_key=key)


@billing.on("invoices.total")
async def total(amounts: list[int]) -> int:
    return sum(amounts)


async def main() -> None:
    async with billing, web:
        print("total:", await web.request("invoices.total", [120, 80], timeout=5))
    print("tokens opened by billing:", billing.stats()["crypto.opened"])
    print(repr(billing))  # no key in reprs, logs or error messages


web.run(main)
