"""How the command line fails: an exit code a script can branch on, and one scrubbed line on stderr.

Shared keys are never printed and URL passwords are redacted, even inside an
error message that quotes the command line.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from ..transports.registry import redact

EXIT_OK = 0
EXIT_REPLY = 1  # the request got no reply: NoHandlers, RequestTimeout, RecipientFailure, ...
EXIT_USAGE = 2  # bad arguments, JSON, URL, namespace or key
EXIT_TRANSPORT = 3  # the transport failed: unreachable server, no multicast route, ...
EXIT_PIPE = 141  # stdout was closed (``addrbus listen a | head -1``), as a shell reports SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)


class UsageError(Exception):
    """The command line cannot be run as given (exit code 2)."""


def describe(exc: BaseException) -> str:
    """Return ``Kind: what happened`` for ``exc``."""
    return f"{type(exc).__name__}: {exc}"


def secrets_in(argv: list[str]) -> dict[str, str]:
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


def fail(code: int, message: str, secrets: dict[str, str]) -> int:
    """Print ``error: message`` on one line, every secret replaced, and return ``code``."""
    # Longest first, so a URL is redacted as a whole before its password alone.
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, secrets[secret])
    print("error: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)
    return code
