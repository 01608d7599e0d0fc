"""The command line: ``addrbus listen | request | send | publish | nodes | keygen``.

Every failure ends in one line on stderr, ``error: Kind: what happened``, and an
exit code a script can branch on (see ``EXIT_*``); never in a traceback. Shared
keys are never printed (except by ``keygen``) and URL passwords are redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pydantic_core import to_jsonable_python

from . import __version__
from ._addresses import address_of
from ._bus import EventBus
from ._exceptions import BusError, ConfigError, ReplyError
from .transports.registry import redact

#: Where the CLI looks for a bus when neither ``--url`` nor ``ADDRBUS_URL`` says:
#: the UDP transport's host-local default group. ``memory://`` (the library's
#: default) would reach no one from a separate process.
DEFAULT_URL = "udp://239.255.0.1:5000"

EXIT_OK = 0
EXIT_REPLY = 1  # the request got no reply: NoHandlers, RequestTimeout, RecipientFailure, ...
EXIT_USAGE = 2  # bad arguments, JSON, URL, namespace or key
EXIT_TRANSPORT = 3  # the transport failed: unreachable server, no multicast route, ...
EXIT_PIPE = 141  # stdout was closed (``addrbus listen a | head -1``), as a shell reports SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)

LISTEN_REFUSAL = "'addrbus listen' does not answer requests; start it with --reply JSON to answer them"

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """The command line cannot be run as given (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Raised, not printed, so that main() prints it as every other error: one line, scrubbed.
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``addrbus`` command line and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc), secrets)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    _setup_logging(getattr(args, "verbose", 0))
    command: Command = args.run
    try:
        return asyncio.run(_guarded(command(args)))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's final flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except ReplyError as exc:
        return _fail(EXIT_REPLY, _describe(exc), secrets)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc), secrets)
    except (ConfigError, ValueError, TypeError) as exc:
        return _fail(EXIT_USAGE, _describe(exc), secrets)
    except (BusError, OSError) as exc:
        return _fail(EXIT_TRANSPORT, _describe(exc), secrets)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command."""
    # Bus options are accepted before and after the command; SUPPRESS keeps the
    # subcommand's parser from overwriting a value given before the command.
    bus = _Parser(add_help=False, allow_abbrev=False)
    group = bus.add_argument_group("bus options")
    group.add_argument("--url", default=argparse.SUPPRESS,
                       help=f"the bus URL (default: $ADDRBUS_URL, else {DEFAULT_URL})")
    group.add_argument("--namespace", default=argparse.SUPPRESS, help="the namespace (default: $ADDRBUS_NAMESPACE)")
    group.add_argument("--key", default=argparse.SUPPRESS,
                       help="the Fernet shared key (default: $ADDRBUS_SHARED_KEY, which ps cannot show)")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="log INFO (-v) or DEBUG (-vv) to stderr")

    parser = _Parser(prog="addrbus", description="Talk to an addrbus event bus from the shell.",
                     parents=[bus], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"addrbus {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, run: Command, help: str, *, options: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[bus] if options else [],
                                  allow_abbrev=False)
        sub.set_defaults(run=run)
        return sub

    listen = command("listen", _listen, "Print every message sent or published to the addresses, one JSON line each.")
    listen.add_argument("addresses", nargs="+", metavar="ADDRESS", type=_address)
    listen.add_argument("--count", type=_positive(int), metavar="N", help="stop after N messages")
    listen.add_argument("--timeout", type=_positive(float), metavar="S", help="stop after S seconds")
    listen.add_argument("--reply", metavar="JSON", help="answer each request with this JSON body")

    for name, run, what in (
        ("request", _request, "Send BODY to one consumer of ADDRESS and print its reply as JSON."),
        ("send", _send, "Send BODY to one consumer of ADDRESS (round-robin)."),
        ("publish", _publish, "Publish BODY to every consumer of ADDRESS."),
    ):
        sub = command(name, run, what)
        sub.add_argument("address", metavar="ADDRESS", type=_address)
        sub.add_argument("body", metavar="BODY", nargs="?", default="null",
                         help="a JSON document, or - to read it from stdin (default: null)")
        sub.add_argument("-H", "--header", action="append", default=[], metavar="K=V", help="add a header")
        sub.add_argument("--wait", type=_non_negative, default=1.0, metavar="S",
                         help="wait up to S seconds for a consumer to be announced (default: 1)")
        if name == "request":
            sub.add_argument("--timeout", type=_positive(float), default=30.0, metavar="S",
                             help="seconds to wait for the reply (default: 30)")

    nodes = command("nodes", _nodes, "List the live nodes and the addresses each consumes.")
    nodes.add_argument("--wait", type=_non_negative, default=0.5, metavar="S",
                       help="listen S more seconds for nodes after the first exchange (default: 0.5)")
    nodes.add_argument("--json", action="store_true", help="print {node: {address: handlers}} as JSON")

    command("keygen", _keygen, "Print a new random shared key.", options=False)
    return parser


# -- commands ----------------------------------------------------------------------


async def _listen(args: argparse.Namespace) -> int:
    reply = None if args.reply is None else _json_argument(args.reply, "--reply")
    bus = _make_bus(args)
    count: int | None = args.count
    printed = 0

    async def pump(address: str) -> None:
        nonlocal printed
        async with bus.stream(address) as stream:
            while count is None or printed < count:
                msg = await stream.get()
                if count is not None and printed >= count:
                    return  # another address reached the count while this one waited
                print(_to_json({
                    "address": msg.address, "body": msg.body, "headers": msg.headers, "id": msg.id,
                    "correlation_id": msg.correlation_id, "sender": msg.sender, "timestamp": msg.timestamp,
                }), flush=True)
                printed += 1
                if msg.is_request:
                    # Fail at once rather than leave the requester waiting for its timeout.
                    await (msg.reply(reply) if args.reply is not None else msg.fail(501, LISTEN_REFUSAL))

    async with bus:
        pumps = [asyncio.create_task(pump(address)) for address in dict.fromkeys(args.addresses)]
        logging.getLogger(__name__).info("listening to %s", ", ".join(args.addresses))
        try:
            done, _ = await asyncio.wait(pumps, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        for task in done:
            task.result()  # a pump ends early only at the count, or by raising
    return EXIT_OK


async def _request(args: argparse.Namespace) -> int:
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        await _wait_for_consumer(bus, args.address, min(args.wait, args.timeout))
        reply = await bus.request(args.address, body, timeout=args.timeout, headers=headers)
    print(_to_json(reply), flush=True)
    return EXIT_OK


async def _send(args: argparse.Namespace) -> int:
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        await _wait_for_consumer(bus, args.address, args.wait)
        await bus.send(args.address, body, headers=headers)
    return EXIT_OK


async def _publish(args: argparse.Namespace) -> int:
    body, headers = _message_arguments(args)
    async with _make_bus(args) as bus:
        if not await _wait_for_consumer(bus, args.address, args.wait):
            logging.getLogger(__name__).info("nobody consumes %r: the message reached no one", args.address)
        await bus.publish(args.address, body, headers=headers)
    return EXIT_OK


async def _nodes(args: argparse.Namespace) -> int:
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


async def _keygen(args: argparse.Namespace) -> int:
    from ._wire.sealing import generate_key

    print(generate_key(), flush=True)
    return EXIT_OK


# -- helpers -----------------------------------------------------------------------


async def _guarded(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command; SIGTERM stops it as Ctrl-C does, so the bus says goodbye."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
        pass
    try:
        return await coro
    except asyncio.CancelledError:
        # Only our own SIGTERM cancellation becomes an exit code; any other propagates.
        if terminated:
            return EXIT_TERMINATED
        raise
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):
            pass


def _make_bus(args: argparse.Namespace) -> EventBus:
    """Build the bus from the flags, falling back to the ADDRBUS_* environment variables."""
    url = getattr(args, "url", None) or os.environ.get("ADDRBUS_URL") or DEFAULT_URL
    namespace = getattr(args, "namespace", None)
    if namespace is None:
        namespace = os.environ.get("ADDRBUS_NAMESPACE", "")
    key = getattr(args, "key", None)
    if key is None:
        key = os.environ.get("ADDRBUS_SHARED_KEY")
    if urlsplit(url).scheme.lower() == "memory":
        raise UsageError(f"{url!r} reaches only this process; give a udp:// or redis:// URL with --url or ADDRBUS_URL")
    return EventBus(url, namespace=namespace, shared_key=key or None, stop_timeout=2.0)


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


def _address(text: str) -> str:
    try:
        return address_of(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return convert


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected zero or a positive number of seconds, got {text!r}")
    return value


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _secrets(argv: list[str]) -> dict[str, str]:
    """Map every secret the user gave (keys, URLs with passwords) to what may be shown instead."""
    keys = [os.environ.get("ADDRBUS_SHARED_KEY", "")]
    urls = [os.environ.get("ADDRBUS_URL", "")]
    for i, arg in enumerate(argv):
        for flag, found in (("--key", keys), ("--url", urls)):
            if arg == flag and i + 1 < len(argv):
                found.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                found.append(arg[len(flag) + 1 :])
    secrets = {url: redact(url) for url in urls if url and redact(url) != url}
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            secrets[password] = "***"
    secrets.update({key: "***" for key in keys if key})
    return secrets


def _fail(code: int, message: str, secrets: dict[str, str]) -> int:
    # Longest first, so a URL is redacted as a whole before its password alone.
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, secrets[secret])
    print("error: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)
    return code
