import logging.config

from addrbus import EventBus, RecipientFailure

logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,  # keep loggers created before this call (addrbus's are)
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
    "loggers": {
        "addrbus": {"level": "INFO", "handlers": ["console"]},  # lifecycle and problems
        "addrbus.transports": {"level": "WARNING"},  # quieter: only reconnects and drops
    },
})

bus = EventBus()


@bus.on("reports.build")
async def build_report(n: int) -> int:
    return 100 // n  # n == 0 raises: logged with its traceback, the bus keeps running


async def main() -> None:
    try:
        await bus.request("reports.build", 0, timeout=5.0)
    except RecipientFailure as exc:
        print(f"caller: {exc}")
    print(f"caller: {await bus.request('reports.build', 4, timeout=5.0)}")


bus.run(main)
