"""The ``ADDRBUS_*`` environment: the one default bus outside a process, and variables nobody reads."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping

logger = logging.getLogger("addrbus")  # the name users configure; fixed when files move

#: The bus ``EventBus.from_env()`` and the ``addrbus`` command join when ``ADDRBUS_URL``
#: does not say: the UDP transport's default group, which is host-local (it sends and
#: listens on 127.0.0.1 only, with a multicast TTL of 0), so every process of this host
#: that uses it is a node of one bus and nothing leaves the host.
ENV_URL = "udp://239.255.0.1:5000"

#: What addrbus itself reads: what a misspelt name is compared with.
SETTINGS = ("ADDRBUS_URL", "ADDRBUS_NAMESPACE", "ADDRBUS_SHARED_KEY", "ADDRBUS_UVLOOP")
#: Every ``ADDRBUS_*`` variable something of this project reads: addrbus, then its test
#: suite and benchmarks, then its examples.
KNOWN = frozenset({
    *SETTINGS,
    "ADDRBUS_NETNS", "ADDRBUS_SOAK", "ADDRBUS_RELIABILITY_DIR", "ADDRBUS_BENCH_UVLOOP",
    "ADDRBUS_MQTT_URL", "ADDRBUS_SENSORS_URL", "ADDRBUS_METRICS_PORT",
})
_PREFIX = len("ADDRBUS_")


def warn_unknown(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log one WARNING naming every ``ADDRBUS_*`` variable nothing reads, with the setting it may mean.

    A misspelt ``ADDRBUS_URL`` would otherwise leave the bus on the default URL, silently
    apart from every other process. The prefix is compared in any case (``addrbus_url``).

    Returns:
        The unknown names, sorted.
    """
    env = os.environ if environ is None else environ
    unknown = sorted(name for name in env if name[:_PREFIX].upper() == "ADDRBUS_" and name not in KNOWN)
    if unknown:
        named = []
        for name in unknown:
            # Compared without the prefix they all share, or every name would look close to every setting.
            close = difflib.get_close_matches(name.upper()[_PREFIX:], [s[_PREFIX:] for s in SETTINGS], n=1)
            named.append(f"{name} (did you mean ADDRBUS_{close[0]}?)" if close else name)
        logger.warning("ignoring unknown environment variable%s %s: addrbus reads %s", "s" if len(unknown) > 1 else "",
                       ", ".join(named), ", ".join(SETTINGS))
    return unknown
