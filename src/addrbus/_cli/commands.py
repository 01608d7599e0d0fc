"""The commands: ``listen``, ``request``, ``send``, ``publish``, ``nodes``, ``monitor`` and ``keygen``.

Each takes the parsed arguments and returns an exit code; failures are raised,
for :func:`~addrbus._cli.program.main` to report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from pydantic_core import to_jsonable_python

from .._bus import EventBus
from .._env import ENV_URL, warn_unknown
from .._patterns import TAP_HEADER
from .._wire.sealing import generate_key
from ..monitor import serve as serve_monitor
from ..transports.registry import redact
from .errors import EXIT_OK, UsageError

logger = logging.getLogger("addrbus._cli")

#: Where the CLI looks for a bus when neither ``--url`` nor ``ADDRBUS_URL`` says: the
#: default of ``EventBus.from_env()`` too, the UDP transport's host-local default group.
#: ``memory://`` (the default of ``EventBus()``) would reach no one from a separate process.
DEFAULT_URL = ENV_URL


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


async def listen(args: argparse.Namespace) -> int:
    """Print what arrives at the addresses, one JSON line per message.

    Without ``--reply`` it watches (a tap): it sees a copy of every publish, send
    and request, and is never chosen for a send or a request. With ``--reply`` it
    consumes the addresses: it takes its turn of sends and requests, and answers.
    """
    reply = None if args.reply is None else _json_argument(args.reply, "--reply")
    bus = _make_bus(args)
    count: int | None = args.count
    printed = 0

    async def pump(address: str) -> None:
        nonlocal printed
        async with bus.stream(address, tap=args.reply is None) as stream:
            while count is None or printed < count:
                msg = await stream.get()
                if count is not None and printed >= count:
                    return  # another address reached the count while this one waited
                headers = dict(msg.headers)
                kind = headers.pop(TAP_HEADER, None) if args.reply is None else (
                    "request" if msg.is_request else "message")
                print(_to_json({
                    "kind": kind, "address": msg.address, "body": msg.body, "headers": headers, "id": msg.id,
                    "correlation_id": msg.correlation_id, "sender": msg.sender, "timestamp": msg.timestamp,
                }), flush=True)
                printed += 1
                if msg.is_request:
                    await msg.reply(reply)

    async with bus:
        pumps = [asyncio.create_task(pump(address)) for address in dict.fromkeys(args.addresses)]
        logger.info("listening to %s", ", ".join(args.addresses))
        try:
            done, _ = await asyncio.wait(pumps, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        for task in done:
            task.result()  # a pump ends early only at the count, or by raising
    return EXIT_OK


async def request(args: argparse.Namespace) -> int:
    """Send a request and print its reply."""
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        await _wait_for_consumer(bus, args.address, min(args.wait, args.timeout))
        reply = await bus.request(args.address, body, timeout=args.timeout, headers=headers)
    print(_to_json(reply), flush=True)
    return EXIT_OK


async def send(args: argparse.Namespace) -> int:
    """Send a message to one consumer."""
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        await _wait_for_consumer(bus, args.address, args.wait)
        await bus.send(args.address, body, headers=headers)
    return EXIT_OK


async def publish(args: argparse.Namespace) -> int:
    """Publish a message to every consumer."""
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        if not await _wait_for_consumer(bus, args.address, args.wait):
            logger.info("nobody consumes %r: the message reached no one", args.address)
        await bus.publish(args.address, body, headers=headers)
    return EXIT_OK


async def nodes(args: argparse.Namespace) -> int:
    """List the other live nodes and what they consume."""
    async with _make_bus(args) as bus:
        # An observation window, not synchronisation: nodes that answer late are still listed.
        await asyncio.sleep(args.wait)
        found = {node: addrs for node, addrs in bus.nodes().items() if node != bus.node_id}
    if args.json:
        print(_to_json(found), flush=True)
        return EXIT_OK
    if not found:
        print(f"no nodes found on {redact(bus.url)}", file=sys.stderr)
        return EXIT_OK
    print(f"{'NODE':<16}  ADDRESSES")
    for node in sorted(found):
        addrs = found[node]
        listed = ", ".join(a if n == 1 else f"{a} ({n} handlers)" for a, n in sorted(addrs.items())) or "-"
        print(f"{node:<16}  {listed}")
    sys.stdout.flush()
    return EXIT_OK


async def monitor(args: argparse.Namespace) -> int:
    """Join the bus as a passive node and serve its picture over HTTP until stopped."""
    host, port = args.http
    bus = _make_bus(args)
    async with bus:
        def ready(url: str) -> None:
            print(f"monitor of {bus.describe()}{' namespace ' + bus.namespace if bus.namespace else ''}"
                  f" at {url} (JSON at {url}state.json)", file=sys.stderr, flush=True)

        await serve_monitor(bus, host, port, args.interval, ready)
    return EXIT_OK


async def keygen(args: argparse.Namespace) -> int:
    """Print a new shared key."""
    print(generate_key(), flush=True)
    return EXIT_OK


def _make_bus(args: argparse.Namespace) -> EventBus:
    """Build the bus from the flags, falling back to the ADDRBUS_* environment variables; say which on stderr.

    A command tries the transport once (``start_timeout=0``): a script learns at once,
    from the exit code, that the bus is not there, and may retry on its own terms.
    """
    warn_unknown()
    url = getattr(args, "url", None) or os.environ.get("ADDRBUS_URL") or DEFAULT_URL
    namespace = getattr(args, "namespace", None)
    if namespace is None:
        namespace = os.environ.get("ADDRBUS_NAMESPACE", "")
    key = getattr(args, "key", None)
    if key is None:
        key = os.environ.get("ADDRBUS_SHARED_KEY")
    if urlsplit(url).scheme.lower() == "memory":
        raise UsageError(f"{url!r} reaches only this process; give a udp:// or redis:// URL with --url or ADDRBUS_URL")
    bus = EventBus(url, namespace=namespace, shared_key=key or None, stop_timeout=2.0, start_timeout=0)
    # One line per run: the most common surprise is a command talking to another bus than the service's.
    print(f"addrbus: bus {redact(bus.url)} namespace {bus.namespace!r}", file=sys.stderr, flush=True)
    return bus


async def _wait_for_consumer(bus: EventBus, address: str, wait: float) -> bool:
    """Give a consumer's announcement ``wait`` seconds to arrive; tell whether one is known."""
    if wait <= 0:
        return _consumers(bus, address) > 0
    try:
        await bus.wait_for_handlers(address, 1, timeout=wait)
    except TimeoutError:
        return False
    return True


def _consumers(bus: EventBus, address: str) -> int:
    return sum(addrs.get(address, 0) for addrs in bus.nodes().values())


def _message_arguments(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"bad header {item!r}: expected -H NAME=VALUE")
        headers[name] = value
    return _json_argument(args.body, "BODY"), headers


def _json_argument(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} must be JSON ({exc.msg} at line {exc.lineno} column {exc.colno});"
            """ quote a string as '"text"', or pass - to read it from stdin"""
        ) from None


def _to_json(value: Any) -> str:
    return json.dumps(value, default=lambda obj: to_jsonable_python(obj, fallback=str))
