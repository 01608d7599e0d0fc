"""OpenTelemetry tracing for addrbus: ``bus.add_interceptor(TracingInterceptor())``.

Needs ``pip install 'addrbus[otel]'`` (opentelemetry-api); which SDK and exporter
record the spans is the application's choice, as OpenTelemetry intends.

Every publish, send and request of the bus gets a span (kind ``PRODUCER``, a
request's ``CLIENT``), and the W3C trace context of that span travels in the
message's headers (``traceparent``, ``tracestate``: the globally configured
propagator, W3C trace context by default). Every handler run gets a span
(``CONSUMER``, a request's ``SERVER``) whose parent is the sender's span, on
whichever node it runs, and which is the current span while the handler runs:
what the handler sends is its child. Attributes follow OpenTelemetry's
messaging semantic conventions; a failure is recorded on the span, with its
``error.type`` (a request's failure type, such as ``NO_HANDLERS``, or the
handler's exception type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._core.intercept import Outcome, Outgoing
from ._exceptions import RecipientFailure, ReplyError
from ._message import Message
from ._version import __version__

__all__ = ["SYSTEM", "TracingInterceptor"]

#: The value of ``messaging.system`` on every span.
SYSTEM = "addrbus"
_KINDS = {"publish": SpanKind.PRODUCER, "send": SpanKind.PRODUCER, "request": SpanKind.CLIENT}


def error_type(error: BaseException) -> str:
    """Return the ``error.type`` of a failure: a request's failure type, or the exception's type name."""
    if isinstance(error, ReplyError):
        return error.failure_type.value
    return type(error).__qualname__


class TracingInterceptor:
    """An interceptor that traces every message of the bus it is added to.

    Args:
        tracer_provider: where spans go; the global one
            (``opentelemetry.trace.set_tracer_provider``) when None.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("addrbus", __version__, tracer_provider=tracer_provider)

    def __repr__(self) -> str:
        return "<TracingInterceptor>"

    def outbound(self, call: Outgoing) -> Callable[[Outcome], None] | None:
        """Start the sender's span and put its context in the message's headers."""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": call.address,
            "messaging.operation.name": call.kind,
            "messaging.operation.type": "send",
        }
        if call.node is not None:
            attributes["messaging.addrbus.node"] = call.node
        span = self._tracer.start_span(f"{call.kind} {call.address}", kind=_KINDS[call.kind], attributes=attributes)
        if not span.is_recording():
            return None  # nothing records it (no SDK, or not sampled): no context worth carrying
        propagate.inject(call.headers, context=trace.set_span_in_context(span))
        return lambda outcome: _end(span, outcome)

    def inbound(self, message: Message[Any]) -> Callable[[Outcome], None] | None:
        """Start the handler's span, a child of the sender's, and make it current while the handler runs."""
        parent = propagate.extract(message.headers) if message.headers else None  # None: the current context
        request = message.correlation_id is not None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": message.address,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": message.id,
        }
        if request:
            attributes["messaging.message.conversation_id"] = message.correlation_id
        if message.sender:
            attributes["messaging.addrbus.sender"] = message.sender
        span = self._tracer.start_span(f"process {message.address}", context=parent,
                                       kind=SpanKind.SERVER if request else SpanKind.CONSUMER, attributes=attributes)
        if not span.is_recording() and not span.get_span_context().is_valid:
            return None  # no SDK here, and no sender's context to keep current either
        token = context.attach(trace.set_span_in_context(span, parent))

        def finish(outcome: Outcome) -> None:
            context.detach(token)
            _end(span, outcome)

        return finish


def _end(span: Span, outcome: Outcome) -> None:
    error = outcome.error
    if error is not None:
        kind = error_type(error)
        span.set_attribute("error.type", kind)
        if isinstance(error, RecipientFailure) and error.remote_type:
            span.set_attribute("messaging.addrbus.remote_type", error.remote_type)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {error}"))
    span.end()
