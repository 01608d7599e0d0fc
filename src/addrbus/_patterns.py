"""Address patterns: tokens separated by ``.``; ``*`` matches one token, a last ``>`` one or more (NATS rules)."""

from __future__ import annotations

WILDCARDS = frozenset({"*", ">"})
#: Joins an address and a group into the key a grouped consumer is registered and announced under.
GROUP_SEP = "\u241e"
#: Addresses of the bus's own (a monitor's questions): no pattern matches them, and listings leave them out.
SYSTEM_PREFIX = "_addrbus.sys."
#: A tap (``bus.stream(a, tap=True)``) consumes ``TAP_PREFIX + a``: senders to ``a`` publish a copy there.
TAP_PREFIX = "_addrbus.tap."
#: The prefixes of the bus's own addresses: users may not register there, listings leave them out.
RESERVED = (SYSTEM_PREFIX, TAP_PREFIX)
#: The header a tap's copy carries: ``publish``, ``send`` or ``request``, what the original was.
TAP_HEADER = "addrbus-tap"
MAX_GROUP_LENGTH = 64


def split_key(key: str) -> tuple[str, str | None]:
    """Return (address, group) of a registration key; group None for an ungrouped one."""
    address, sep, group = key.partition(GROUP_SEP)
    return address, (group if sep else None)


def group_key(address: str, group: object) -> str:
    """Return the key of ``address`` consumed in ``group``.

    :raises ValueError: for a group that is not a non-empty str of printable characters, at most 64.
    """
    if type(group) is not str or not group or len(group) > MAX_GROUP_LENGTH or not group.isprintable() \
            or GROUP_SEP in group:
        raise ValueError(f"a group is a non-empty name of at most {MAX_GROUP_LENGTH} printable characters,"
                         f" not {group!r}")
    return address + GROUP_SEP + group


def is_pattern(address: str) -> bool:
    """Tell whether ``address`` (already checked by ``address_of``) is a pattern: a ``*`` or ``>`` token."""
    if "*" not in address and ">" not in address:
        return False
    return any(token in WILDCARDS for token in address.split("."))


def check_registered(address: str) -> str:
    """Return ``address`` if it may be consumed: an exact address, or a well-formed pattern.

    :raises ValueError: for a ``*`` or ``>`` inside a token (``a*``), ``>`` before the last
        token, or (in a pattern) an empty token (``a..*``).
    """
    if GROUP_SEP in address:
        raise ValueError(f"an address must not contain {GROUP_SEP!r} (it joins an address and a group)")
    if "*" not in address and ">" not in address:
        return address
    tokens = address.split(".")
    for i, token in enumerate(tokens):
        if token not in WILDCARDS and ("*" in token or ">" in token):
            raise ValueError(f"a pattern's '*' or '>' must be a whole token, not part of {token!r} in {address!r}")
        if token == ">" and i != len(tokens) - 1:
            raise ValueError(f"'>' must be a pattern's last token: {address!r}")
        if not token:
            raise ValueError(f"a pattern must not have an empty token: {address!r}")
    return address


def check_concrete(address: str) -> str:
    """Return ``address`` if a message may be sent to it (no ``*`` or ``>`` token).

    :raises ValueError: for a pattern.
    """
    if is_pattern(address) or GROUP_SEP in address:
        raise ValueError(f"cannot publish, send or request to a pattern ({address!r}): name one address")
    return address


def matches(pattern: tuple[str, ...], tokens: list[str]) -> bool:
    """Tell whether the address split into ``tokens`` matches the pattern split into ``pattern``."""
    last = len(pattern) - 1
    for i, want in enumerate(pattern):
        if want == ">" and i == last:
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(pattern)
