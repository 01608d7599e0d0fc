from pydantic import BaseModel

from addrbus import EventBus, Message, NoHandlers, RecipientFailure

event_bus = EventBus()


class User(BaseModel):
    username: str
    email: str


# Request-response: the same decorator, the same Message[T], the return value is the reply.
@event_bus.consumer("greeting")
async def handle_greeting(msg: Message[str]) -> str:
    if not msg.body:
        raise ValueError("nobody to greet")
    return f"Hello, {msg.body}!"


# Publish-subscribe: .on as a decorator...
@event_bus.on("user.created")
async def notify_admin(user: User) -> None:
    print(f"New user registered: {user.email}")


# ...or as a method.
async def send_welcome_email(user: User) -> None:
    print(f"Sending welcome email to {user.email}")


registration = event_bus.on("user.created", send_welcome_email)  # new: keep it to unregister later


async def main() -> None:
    print(await event_bus.request("greeting", "World"))  # Hello, World!
    await event_bus.publish("user.created", User(username="john", email="john@example.com"))
    await event_bus.drain()  # new: wait for the listeners instead of sleeping

    # New: a request always ends, and failures have types.
    try:
        await event_bus.request("greeting", "")
    except RecipientFailure as exc:  # the handler raised: its exception was logged, the bus goes on
        print(f"RecipientFailure: {exc.remote_type}: {exc.message}")
    try:
        await event_bus.request("farewell", "World")
    except NoHandlers:  # raised at once, not after a timeout
        print("NoHandlers: nobody consumes 'farewell'")
    registration.unregister()


event_bus.run(main)  # start the bus, run main(), stop the bus
