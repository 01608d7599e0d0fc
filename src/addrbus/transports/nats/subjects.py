"""NATS subject names of a bus: every subject of a namespace under ``addrbus.<namespace token>.``.

A namespace and an interest key are free text; a subject token may hold none
of ``.``, ``*``, ``>`` or white space, and must not be empty. :func:`token`
keeps letters, digits, ``-`` and ``_`` as they are and writes every other
UTF-8 byte as ``~`` and two hex digits, so two names never share a token and a
subject never holds a wildcard. Under the prefix:

* ``<prefix>.b`` -- broadcasts (membership), every node;
* ``<prefix>.n.<node_id>`` -- one node's inbox (unicasts);
* ``<prefix>.a.<key token>`` -- the publishes of one address, subscribed by its
  consumers (the key is the address, or its keyed digest with a ``shared_key``);
* ``<prefix>.q.<key token>`` -- the sends and requests of one address, in a queue
  group of the same name that its consumers join: NATS hands each to one of them;
* ``<prefix>.r.<node_id>.<request id>`` -- the reply subject a request names, on
  which its node hears NATS's no-responders status (503) when nobody took it.

The connection is opened with ``no_echo``: NATS never hands a node its own
messages, so frames need no sender id.
"""

from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z0-9_-]*")


def token(name: str) -> str:
    """Return ``name`` as one subject token (``~`` for the empty name)."""
    if _PLAIN.fullmatch(name):
        return name or "~"
    return "".join(ch if _PLAIN.fullmatch(ch) else "".join(f"~{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
                   for ch in name)


def prefix(namespace: str) -> str:
    """Return the prefix of every subject of ``namespace``."""
    return f"addrbus.{token(namespace)}"


def broadcast(prefix_: str) -> str:
    """Return the namespace's broadcast subject."""
    return f"{prefix_}.b"


def inbox(prefix_: str, node_id: str) -> str:
    """Return the inbox subject of ``node_id``."""
    return f"{prefix_}.n.{node_id}"


def interest(prefix_: str, key: str) -> str:
    """Return the subject of interest key ``key``."""
    return f"{prefix_}.a.{token(key)}"


def queue(prefix_: str, key: str) -> str:
    """Return the queue subject of interest key ``key`` (its queue group has the key's token as name)."""
    return f"{prefix_}.q.{token(key)}"


def no_responders(prefix_: str, node_id: str) -> str:
    """Return the prefix of the reply subjects of ``node_id``'s requests."""
    return f"{prefix_}.r.{node_id}"
