"""Every error addrbus raises, in one tree::

    BusError
     ├── ConfigError (also ValueError)      bad URL, option, key or handler
     ├── BusNotRunning                      the bus is not started
     ├── TransportError                     the transport failed to move a frame
     │    ├── MessageTooLarge               .size, .limit
     │    └── DeliveryUnknown               the frame may or may not have been sent
     └── ReplyError                         a request did not get its reply
          │                                 .failure_type, .code, .message
          ├── NoHandlers                    nobody consumes the address
          ├── RequestTimeout (TimeoutError) no reply before the deadline
          ├── RecipientFailure              the handler failed; .remote_type
          ├── RecipientGone                 the node owing the reply left
          └── BusStopped                    the bus stopped while waiting
"""

from __future__ import annotations

from enum import Enum


class FailureType(str, Enum):
    """Why a request failed (the ``failure_type`` of a :class:`ReplyError`)."""

    NO_HANDLERS = "NO_HANDLERS"
    TIMEOUT = "TIMEOUT"
    RECIPIENT_FAILURE = "RECIPIENT_FAILURE"
    RECIPIENT_GONE = "RECIPIENT_GONE"
    STOPPED = "STOPPED"


class BusError(Exception):
    """The root of every addrbus error."""


class ConfigError(BusError, ValueError):
    """A URL, option, key or handler is not acceptable."""


class BusNotRunning(BusError):
    """The bus was used before ``start()`` or after ``stop()``."""


class TransportError(BusError):
    """The transport could not move a frame."""


class MessageTooLarge(TransportError):
    """A frame is larger than the transport carries."""

    def __init__(self, size: int, limit: int, scheme: str = "") -> None:
        self.size = size
        self.limit = limit
        hint = " (use redis:// for larger messages)" if scheme == "udp" else ""
        super().__init__(f"message of {size} bytes exceeds the {limit}-byte limit{hint}")


class DeliveryUnknown(TransportError):
    """The frame may or may not have been delivered (the transport failed mid-send)."""


class ReplyError(BusError):
    """A request ended without a reply."""

    failure_type: FailureType = FailureType.RECIPIENT_FAILURE

    def __init__(self, message: str, *, code: int = -1) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class NoHandlers(ReplyError):
    """No handler consumes the address."""

    failure_type = FailureType.NO_HANDLERS


class RequestTimeout(ReplyError, TimeoutError):
    """No reply arrived before the request's deadline."""

    failure_type = FailureType.TIMEOUT


class RecipientFailure(ReplyError):
    """The handler failed: it raised, called ``msg.fail()``, or rejected the body."""

    failure_type = FailureType.RECIPIENT_FAILURE

    def __init__(self, message: str, *, code: int = -1, remote_type: str = "") -> None:
        self.remote_type = remote_type
        super().__init__(message, code=code)

    def __str__(self) -> str:
        prefix = f"{self.remote_type}: " if self.remote_type else ""
        return f"{prefix}{self.message} (code {self.code})"


class RecipientGone(ReplyError):
    """The node that owed the reply left the bus or stopped answering."""

    failure_type = FailureType.RECIPIENT_GONE


class BusStopped(ReplyError):
    """The bus stopped while the request was waiting."""

    failure_type = FailureType.STOPPED
