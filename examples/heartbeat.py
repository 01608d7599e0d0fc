"""Scheduled jobs on a small cluster: heartbeats on every node, one report for them all.

Two nodes share the in-process hub ``memory://heartbeat-demo`` (give them
"udp://239.255.0.1:5000" or "redis://localhost:6379/0" and each can be its own
process). Every node publishes a heartbeat on an interval; the singleton job
"report" runs on one node only, and moves to the other when that node stops.
Finishes in about a second.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from addrbus import EventBus, Job, every

URL = "memory://heartbeat-demo"


class Node:
    """One service instance: a bus with a heartbeat job and the singleton report job."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heard: Counter[str] = Counter()  # heartbeats heard, by sender
        self.bus = EventBus(URL)
        self.heartbeat: Job = self.bus.schedule(every(0.1).seconds, self.beat, name="heartbeat")
        self.report: Job = self.bus.schedule(every(0.25).seconds, self.write_report, name="report", singleton=True)
        self.bus.on("cluster.heartbeat", self.hear)

    async def beat(self) -> None:
        await self.bus.publish("cluster.heartbeat", self.name)

    def hear(self, sender: str) -> None:
        self.heard[sender] += 1

    def write_report(self) -> None:  # sync: runs in a worker thread
        print(f"  report written by {self.name}")


async def main() -> None:
    alpha, beta = Node("alpha"), Node("beta")
    for node in (alpha, beta):
        await node.bus.start()
    leader, follower = sorted((alpha, beta), key=lambda node: node.bus.node_id)
    print(f"started; {leader.name} has the smallest node id, so it runs the report")

    await leader.report.wait(runs=2)
    await leader.heartbeat.wait(runs=3)
    await follower.report.wait(standby=1)
    print(f"{follower.name} left {follower.report.standby} report(s) to {leader.name}")

    print(f"stopping {leader.name}")
    await leader.bus.stop()  # it says goodbye, so the other node takes over at its next occurrence
    await follower.report.wait(runs=2)
    await follower.bus.stop()

    for node in (alpha, beta):
        heard = ", ".join(f"{count} from {sender}" for sender, count in sorted(node.heard.items()))
        print(f"{node.name}: sent {node.heartbeat.runs} heartbeats, heard {heard}; wrote {node.report.runs} reports")


if __name__ == "__main__":
    asyncio.run(main())
