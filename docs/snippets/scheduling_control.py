import asyncio

from addrbus import EventBus, every

bus = EventBus()


@bus.schedule(every(0.05).seconds)
async def slow() -> None:
    await asyncio.sleep(0.12)  # longer than the interval: runs never overlap


@bus.schedule(every(0.05).seconds)
def flaky() -> None:
    raise RuntimeError("logged with its traceback; the job runs again next time")


async def main() -> None:
    async with bus:
        await slow.job.wait(runs=2, skipped=2)
        await flaky.job.wait(failures=3)
        print(f"slow: {slow.job.runs} runs, {slow.job.skipped} occurrences skipped")
        print(f"flaky: {flaky.job.runs} runs, {flaky.job.failures} failures")

        slow.job.pause()
        print(f"paused: {slow.job.paused}, next run {slow.job.next_run_time}")
        slow.job.resume()
        print(f"resumed: next run at {slow.job.next_run_time:%H:%M:%S.%f}")
        flaky.job.remove()
        print(f"jobs: {[job.name for job in bus.jobs()]}")


asyncio.run(main())
