"""The argument parser of every command, and the converters that check arguments as they are parsed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from .._addresses import address_of
from .._version import __version__
from .commands import DEFAULT_URL, Command, keygen, listen, monitor, nodes, publish, request, send
from .errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Raised, not printed, so that main() prints it as every other error: one line, scrubbed.
        raise UsageError(f"{message} (see '{self.prog} --help')")


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

    sub = command("listen", listen, "Print every message sent or published to the addresses, one JSON line each.")
    sub.add_argument("addresses", nargs="+", metavar="ADDRESS", type=_address)
    sub.add_argument("--count", type=_positive(int), metavar="N", help="stop after N messages")
    sub.add_argument("--timeout", type=_positive(float), metavar="S", help="stop after S seconds")
    sub.add_argument("--reply", metavar="JSON", help="answer each request with this JSON body")

    for name, run, what in (
        ("request", request, "Send BODY to one consumer of ADDRESS and print its reply as JSON."),
        ("send", send, "Send BODY to one consumer of ADDRESS (round-robin)."),
        ("publish", publish, "Publish BODY to every consumer of ADDRESS."),
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

    sub = command("nodes", nodes, "List the live nodes and the addresses each consumes.")
    sub.add_argument("--wait", type=_non_negative, default=0.5, metavar="S",
                     help="listen S more seconds for nodes after the first exchange (default: 0.5)")
    sub.add_argument("--json", action="store_true", help="print {node: {address: handlers}} as JSON")

    sub = command("monitor", monitor, "Watch the bus: serve a live web page (and /state.json) of every node.")
    sub.add_argument("--http", type=_host_port, default=("127.0.0.1", 8765), metavar="HOST:PORT",
                     help="where to serve the page (default: 127.0.0.1:8765; port 0 picks a free one)")
    sub.add_argument("--interval", type=_positive(float), default=1.0, metavar="S",
                     help="ask every node for its state each S seconds (default: 1)")

    command("keygen", keygen, "Print a new random shared key.", options=False)
    return parser


def _address(text: str) -> str:
    try:
        return address_of(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, such as 127.0.0.1:8765, got {text!r}")
    return host.strip("[]"), int(port)


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
