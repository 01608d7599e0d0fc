"""autobus's key command: ``python -m addrbus.serializer generate`` prints a new shared key.

autobus users make their key with ``python -m autobus.serializer generate``;
under addrbus the same command, with ``addrbus`` for ``autobus``, prints one
Fernet key (32 random bytes, url-safe base64) as one line of text, for
``shared_key=`` and ``ADDRBUS_SHARED_KEY``. It is ``addrbus keygen`` under
autobus's name, and needs ``addrbus[crypto]``. Only the command is kept:
addrbus's wire format is its own, so there is no autobus serializer class here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._exceptions import ConfigError
from ._wire.sealing import generate_key

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2  # as the addrbus command: bad arguments, or no cryptography package


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m addrbus.serializer generate`` and return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m addrbus.serializer",
        description="Print a new random shared key (a Fernet key), as python -m autobus.serializer does.",
    )
    commands = parser.add_subparsers(dest="command", metavar="generate", required=True)
    commands.add_parser("generate", help="print a new random shared key", description="Print a new random shared key.")
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    try:
        key = generate_key()
    except ConfigError as exc:
        sys.stderr.write(f"error: ConfigError: {exc}\n")
        return EXIT_USAGE
    sys.stdout.write(key + "\n")
    sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
