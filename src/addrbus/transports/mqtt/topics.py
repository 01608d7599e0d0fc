"""Topic names of an MQTT bus: the namespace first, then what the topic carries.

Per namespace ``<ns>`` (escaped as one level, see :func:`level`):

* ``<ns>/b`` -- broadcasts, subscribed by every node with MQTT 5's *No Local*
  option, so the broker never sends a node its own broadcasts back;
* ``<ns>/n/<node_id>`` -- the node's inbox (unicasts);
* ``<ns>/a/<key levels>`` -- the publishes of one interest key, subscribed (No
  Local too) by the nodes that consume its address. The key is split at each
  ``.`` and every part is escaped as a level: ``users.created`` becomes
  ``<ns>/a/users/created``, so ``mosquitto_sub -t 'shop/a/users/#'`` watches a
  family of addresses. With a ``shared_key`` the key is a url-safe base64
  digest (one level, no ``.``), which reveals nothing;
* ``<ns>/k/<digest>`` -- a key whose topic would exceed :data:`MAX_KEY_TOPIC`
  bytes, by its SHA-256 (url-safe base64). Addresses (255 characters at most)
  never get there;
* ``<ns>/q/<the key's topic after <ns>/>`` -- the sends and requests of one
  interest key, which its consumers subscribe to as the MQTT 5 shared
  subscription ``$share/addrbus/<ns>/q/...``: the broker hands each message to
  one of them.

Interest keys are opaque strings to a transport, so :func:`level` escapes
whatever MQTT gives a meaning to or refuses in a topic: ``%`` (the escape
itself), ``/`` (the level separator), the wildcards ``+`` and ``#``, ``$``
(topics starting with it are the broker's), U+0000 and the control
characters, and the Unicode non-characters mosquitto rejects. Each becomes
``%XX`` per UTF-8 byte, as in URLs; an empty level (``a..b``, or an empty key)
is written ``%``, which no escaped text can be. Distinct keys therefore map to
distinct topics, and :func:`unlevel` reads a level back.
"""

from __future__ import annotations

import base64
import hashlib
import re

from ..._exceptions import ConfigError

_NODE_ID = re.compile(r"[0-9a-f]{16}")
_NONCHARS = "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(17))
_SPECIAL = re.compile("[%/+#$\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + re.escape(_NONCHARS) + "]")
_ESCAPED = re.compile(r"(?:%[0-9A-F]{2})+")
EMPTY = "%"
SHARE = "$share/addrbus/"  # the shared-subscription group: one per topic filter, so one name serves all

#: Longest interest topic written out in full, in UTF-8 bytes (MQTT allows 65,535).
MAX_KEY_TOPIC = 32_768


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it has the bus's form (16 lowercase hex characters).

    :raises ConfigError: if it does not.
    """
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise ConfigError(f"a node id is 16 lowercase hex characters, not {node_id!r}")
    return node_id


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


def level(text: str) -> str:
    """Return ``text`` as one topic level: MQTT-special characters as ``%XX``, empty as ``%``."""
    return _SPECIAL.sub(_escape, text) if text else EMPTY


def unlevel(escaped: str) -> str:
    """Return the text that :func:`level` wrote as ``escaped``."""
    if escaped == EMPTY:
        return ""
    return _ESCAPED.sub(lambda m: bytes.fromhex(m.group().replace("%", "")).decode("utf-8", "surrogatepass"), escaped)


class Topics:
    """The topic names of one node in one namespace, with the interest topics kept computed."""

    MAX_CACHED = 4096  # interest topics kept; a bus that publishes to more recomputes them

    def __init__(self, namespace: str, node_id: str) -> None:
        self.prefix = level(namespace) + "/"
        self.broadcast = self.prefix + "b"
        self.inbox_prefix = self.prefix + "n/"
        self.inbox = self.inbox_prefix + check_node_id(node_id)
        self._keys: dict[str, str] = {}

    def inbox_of(self, node_id: str) -> str:
        """Return the inbox topic of ``node_id``."""
        return self.inbox_prefix + level(node_id)

    def queue(self, key: str) -> str:
        """Return the topic the sends and requests of interest key ``key`` go to."""
        return self.prefix + "q/" + self.key(key)[len(self.prefix):]

    def shared(self, key: str) -> str:
        """Return the shared subscription of ``key``'s queue topic (one consumer gets each message)."""
        return SHARE + self.queue(key)

    def key(self, key: str) -> str:
        """Return the topic of interest key ``key``."""
        topic = self._keys.get(key)
        if topic is None:
            if len(self._keys) >= self.MAX_CACHED:
                self._keys.clear()
            topic = self._keys[key] = key_topic(self.prefix, key)
        return topic


def key_topic(prefix: str, key: str) -> str:
    """Return the topic of interest key ``key`` under the namespace ``prefix`` (module docstring)."""
    topic = prefix + "a/" + "/".join(map(level, key.split(".")))
    if len(topic.encode("utf-8", "surrogatepass")) <= MAX_KEY_TOPIC:
        return topic
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return prefix + "k/" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
