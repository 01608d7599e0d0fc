from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from addrbus import EventBus
from addrbus.otel import TracingInterceptor

exporter = InMemorySpanExporter()  # in a service: an OTLP exporter, batched
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

bus = EventBus()
bus.add_interceptor(TracingInterceptor(tracer_provider=provider))  # None: the global provider


@bus.on("prices.quote")
async def quote(symbol: str) -> float:
    return 101.5


async def main() -> None:
    await bus.request("prices.quote", "ACME")
    for span in exporter.get_finished_spans():
        parent = span.parent.span_id if span.parent else None
        print(f"{span.name:<22} {span.kind.name:<7} trace {span.context.trace_id:032x} parent {parent}")


bus.run(main)
