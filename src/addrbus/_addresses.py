"""Addresses: plain strings, ``str`` Enums or typed endpoints, checked once."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

MAX_ADDRESS_LENGTH = 255
V = TypeVar("V")

_valid: dict[Any, str] = {}


_CACHE_LIMIT = 65_536


def address_of(address: Any) -> str:
    """Return the address as a plain ``str``, checked.

    :raises ValueError: for an empty, whitespace-only, over-long address or
        one with control characters.
    :raises TypeError: for anything but a ``str`` or ``str`` Enum.
    """
    try:
        return _valid[address]
    except (KeyError, TypeError):
        pass
    if isinstance(address, Enum):
        value = address.value
    else:
        value = address
    if not isinstance(value, str):
        raise TypeError(f"an address is a str or a str Enum, not {type(address).__name__}")
    value = str.__str__(value)  # a str subclass (Endpoint) becomes a plain str
    if not value.strip():
        raise ValueError("an address must not be empty or whitespace only")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"an address must be at most {MAX_ADDRESS_LENGTH} characters, got {len(value)}")
    if has_control_chars(value):
        raise ValueError("an address must not contain control characters")
    if not value.isascii() and not is_encodable(value):
        raise ValueError("an address must be valid Unicode text (no lone surrogates)")
    return remember(_valid, address, value)


def remember(cache: dict[Any, V], key: Any, value: V) -> V:
    """Store ``value`` under ``key`` in a memo ``cache`` unless it is full or ``key`` unhashable; return it."""
    if len(cache) < _CACHE_LIMIT:
        try:
            cache[key] = value
        except TypeError:
            pass
    return value


def has_control_chars(value: str) -> bool:
    """Tell whether ``value`` holds a C0 or C1 control character (or DEL)."""
    return any(c < " " or "\x7f" <= c <= "\x9f" for c in value)


def is_encodable(value: str) -> bool:
    """Tell whether ``value`` can travel as UTF-8 (a lone surrogate cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_valid_address(value: str) -> bool:
    """Tell whether a received address would be accepted by ``address_of``."""
    try:
        address_of(value)
    except (TypeError, ValueError):
        return False
    return True
