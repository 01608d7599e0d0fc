import asyncio

from addrbus import (
    BusNotRunning,
    BusStopped,
    EventBus,
    NoHandlers,
    RecipientFailure,
    ReplyError,
    RequestTimeout,
)

bus = EventBus()


@bus.on("inventory.count")
async def count(sku: str) -> int:
    raise KeyError(sku)  # logged with its traceback; the requester gets code 500


@bus.on("inventory.slow")
async def slow() -> None:
    await asyncio.sleep(0.5)


async def main() -> None:
    async with bus:
        try:
            await bus.request("inventory.count", "pear")
        except RecipientFailure as exc:
            print(f"RecipientFailure: code={exc.code} remote_type={exc.remote_type} message={exc.message}")
        try:
            await bus.request("inventory.nobody", None)
        except NoHandlers as exc:  # at once, not after the timeout
            print(f"NoHandlers: {exc}")
        try:
            await bus.request("inventory.slow", None, timeout=0.1)
        except RequestTimeout as exc:  # also a TimeoutError
            print(f"RequestTimeout: {exc} (failure_type={exc.failure_type.value})")
        waiting = asyncio.create_task(bus.request("inventory.slow", None, timeout=30))
        await asyncio.sleep(0)  # let the request go out
    # Leaving the block stopped the bus: the pending request failed at once, and
    # stop() waited (at most stop_timeout, 5 s by default) for running handlers.
    try:
        await waiting
    except ReplyError as exc:  # the base of NoHandlers, RequestTimeout, RecipientFailure...
        print(f"{type(exc).__name__}: {exc}, is BusStopped: {isinstance(exc, BusStopped)}")
    try:
        await bus.send("inventory.count", "apple")
    except BusNotRunning as exc:
        print(f"BusNotRunning: {exc}")


asyncio.run(main())
