import asyncio

from addrbus import EventBus, every


def node(runs: list[str]) -> EventBus:
    bus = EventBus("memory://cluster")  # the same code on every node, on any transport

    @bus.schedule(every(0.1).seconds, name="cleanup", singleton=True)
    async def cleanup() -> None:
        runs.append(bus.node_id)

    return bus


async def main() -> None:
    runs: list[str] = []
    nodes = [node(runs), node(runs)]
    for bus in nodes:
        await bus.start()
    leader, follower = sorted(nodes, key=lambda bus: bus.node_id)  # the smallest node id runs it
    [leader_job], [follower_job] = leader.jobs(), follower.jobs()
    await leader_job.wait(runs=3)
    await follower_job.wait(standby=1)  # its occurrences were left to the leader
    print(f"{len(runs)} runs, all by the leader: {set(runs) == {leader.node_id}}")

    await leader.stop()  # it says goodbye; a node that dies is dropped after ~3 heartbeats
    await follower_job.wait(runs=2)
    print(f"the follower took over: {follower_job.runs} runs")
    await follower.stop()


asyncio.run(main())
