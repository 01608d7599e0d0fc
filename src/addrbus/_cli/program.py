"""The ``addrbus`` program: parse the command line, run one command on asyncio, map every failure to an exit code.

Every failure ends in one line on stderr, ``error: Kind: what happened``, and
an exit code a script can branch on (see :mod:`.errors`); never in a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .._exceptions import BusError, ConfigError, ReplyError
from .._loops import run as run_loop
from .commands import Command
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_REPLY,
    EXIT_TERMINATED,
    EXIT_TRANSPORT,
    EXIT_USAGE,
    UsageError,
    describe,
    fail,
    secrets_in,
)
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``addrbus`` command line and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    secrets = secrets_in(argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return fail(EXIT_USAGE, str(exc), secrets)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    _setup_logging(getattr(args, "verbose", 0))
    command: Command = args.run
    try:
        # On uvloop where it is installed (addrbus[speed]); ADDRBUS_UVLOOP=0 keeps asyncio's loop.
        return run_loop(_guarded(command(args)), uvloop=None if os.environ.get("ADDRBUS_UVLOOP", "1") != "0" else False)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's final flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except ReplyError as exc:
        return fail(EXIT_REPLY, describe(exc), secrets)
    except UsageError as exc:
        return fail(EXIT_USAGE, str(exc), secrets)
    except (ConfigError, ValueError, TypeError) as exc:
        return fail(EXIT_USAGE, describe(exc), secrets)
    except (BusError, OSError) as exc:
        return fail(EXIT_TRANSPORT, describe(exc), secrets)


async def _guarded(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command; SIGINT and SIGTERM stop it, so the bus says goodbye, and give their exit codes.

    Both go through the loop's own signal handling: uvloop does not run the
    Python-level SIGINT handler ``asyncio.Runner`` installs while it waits for I/O.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopped_by: list[int] = []

    def stop(code: int) -> None:
        stopped_by.append(code)
        if task is not None:
            task.cancel()

    signals = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}
    for sig, code in signals.items():
        try:
            loop.add_signal_handler(sig, stop, code)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        return await coro
    except asyncio.CancelledError:
        # Only our own cancellation, by a signal, becomes an exit code; any other propagates.
        if stopped_by:
            return stopped_by[0]
        raise
    finally:
        for sig in signals:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
