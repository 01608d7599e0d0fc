"""MQTT 5 transport (``mqtt://``, ``mqtts://``); aiomqtt itself loads only when one is built."""

from __future__ import annotations

from .transport import MqttTransport, from_url

__all__ = ["MqttTransport", "from_url"]
