"""The command line: ``addrbus listen | request | send | publish | nodes | keygen``.

:mod:`.program` runs it (``main``), :mod:`.parser` reads the arguments,
:mod:`.commands` does the work on addrbus's public API, and :mod:`.errors`
turns every failure into one scrubbed line and an exit code.
"""

from .commands import DEFAULT_URL
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_REPLY,
    EXIT_TERMINATED,
    EXIT_TRANSPORT,
    EXIT_USAGE,
    UsageError,
)
from .parser import build_parser
from .program import main

__all__ = [
    "DEFAULT_URL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_REPLY",
    "EXIT_TERMINATED",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]
