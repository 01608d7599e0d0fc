import logging
import sys
import time

from addrbus import EventBus

logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

bus = EventBus()  # blocking_threshold=0.1 (seconds) by default; None turns the watchdog off


@bus.on("reports.build")
async def build_report(n: int) -> int:
    time.sleep(0.6)  # noqa: ASYNC251 - the mistake shown: the whole event loop waits for it
    return n


@bus.on("reports.build_in_thread")
def build_report_in_thread(n: int) -> int:  # a plain def runs in a worker thread: the loop goes on
    time.sleep(0.6)
    return n


async def main() -> None:
    await bus.request("reports.build", 1)  # logs one WARNING naming build_report
    await bus.request("reports.build_in_thread", 2)  # logs nothing
    print("stalls.handler:", bus.stats().get("stalls.handler", 0))


bus.run(main)
