import asyncio
import itertools
from datetime import datetime, timedelta

from addrbus import EventBus, at, cron, every

bus = EventBus()
beats = itertools.count(1)


@bus.schedule(every(0.2).seconds)  # the autobus / schedule spelling: every(10).minutes
async def heartbeat() -> None:
    await bus.publish("service.heartbeat", next(beats))


@bus.schedule(cron("*/5 * * * *"))  # minute hour day month weekday, as crontab
def report() -> None:
    print("a sync job runs in a worker thread")


@bus.on("service.heartbeat")
async def heard(beat: int) -> None:
    print(f"heard heartbeat {beat}")


async def main() -> None:
    async with bus:  # jobs start and stop with the bus
        once = bus.schedule(at(datetime.now() + timedelta(seconds=0.3)), lambda: print("once"), name="once")
        for job in bus.jobs():
            print(f"{job.name}: {job.trigger!r}, next run {job.next_run_time:%H:%M:%S}")
        await heartbeat.job.wait(runs=3)  # instead of sleeping
        await once.wait(runs=1)
        print(f"heartbeat ran {heartbeat.job.runs} times; jobs now: {[job.name for job in bus.jobs()]}")


asyncio.run(main())
