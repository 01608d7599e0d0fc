import time

from addrbus import EventBus, Message, Outcome, Outgoing

bus = EventBus()


class Audit:
    """Stamp every outgoing message, and time every handler run."""

    def outbound(self, call: Outgoing) -> None:
        call.headers["sent-at"] = f"{time.time():.6f}"  # travels with the message

    def inbound(self, message: Message[object]):
        def finish(outcome: Outcome) -> None:
            status = "failed" if outcome.error else "ok"
            print(f"{message.address}: {status} in {outcome.duration * 1000:.2f} ms")

        return finish  # called once the handler returned or raised


@bus.consumer("orders.create")
async def create(msg: Message[dict[str, int]]) -> int:
    assert "sent-at" in msg.headers
    return msg.body["qty"] * 2


async def main() -> None:
    remove = bus.add_interceptor(Audit())
    print(await bus.request("orders.create", {"qty": 21}))
    remove()  # the bus takes its plain path again


bus.run(main)
