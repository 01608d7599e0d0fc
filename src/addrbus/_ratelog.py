"""Log a recurring problem at most once per reason per interval."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """Log at most one warning per reason every ``interval`` seconds.

    Junk on the wire arrives in floods; one line per reason per 10 s says
    what is happening without drowning the log (or leaking the junk itself).
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, msg: str, *args: Any) -> None:
        """Log ``msg`` unless ``reason`` was logged less than ``interval`` ago."""
        t = time.monotonic()
        last = self._last.get(reason)
        if last is not None and t - last < self._interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = t
        suppressed = self._suppressed.pop(reason, 0)
        if suppressed:
            msg += " (%d more like this since the last report)"
            args = (*args, suppressed)
        self._logger.warning(msg, *args)
