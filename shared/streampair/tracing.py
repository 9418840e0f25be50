"""OpenTelemetry tracing across the pair: one trace from publish to processing.

Off unless `OTEL_TRACES_EXPORTER` is `otlp` or `console`; then the OpenTelemetry SDK reads the
standard variables itself (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...). While off, every function here returns at its
first line: tracing costs nothing measurable.

Spans follow the OpenTelemetry messaging conventions: `send {stream}` (PRODUCER) around each
publish, `process {stream}` (CONSUMER) around each handled message, `ack`/`nack {stream}`
(settle) below it. The context travels in the message's properties under the W3C keys
`traceparent` and `tracestate`, as Pulsar's Java client writes them, so a message published by
a traced Java client is processed under its trace too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from structlog.typing import EventDict, WrappedLogger

from streampair.message import Message

SYSTEM = "pulsar"


def _attributes(
    operation_type: str, operation_name: str, topic: str, more: Mapping[str, AttributeValue]
) -> dict[str, AttributeValue]:
    """The attributes of OpenTelemetry's messaging conventions that every span here has, then `more`."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation_name,
        "messaging.destination.name": topic,
        **more,
    }


_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None
_direct_w3c = True
#: True once `configure` installed an exporter; read on every message, so a plain module global.
enabled = False


def configure(service: str, exporter: str | None) -> None:
    """Install the SDK with `exporter` (`otlp`, `console`); None or `none`: leave tracing off."""
    global _tracer, _provider, enabled
    if exporter in (None, "none"):
        return
    # Imported only when on: the SDK and the exporter cost start-up time and memory.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    # A name given by OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES wins over the default.
    named = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {SERVICE_NAME: service})
    _provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    _provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(_provider)
    _tracer = trace.get_tracer("streampair")
    _choose_injection()
    enabled = True


def shutdown(timeout: float = 5.0) -> None:
    """Export what is buffered, for at most `timeout` seconds.

    An unreachable collector would otherwise hold the exit for the exporter's retries (up to
    OTEL_EXPORTER_OTLP_TIMEOUT, 10 s: measured 12.6 s), past the grace period compose and
    Kubernetes give. What is not out by then is lost with the process, as it would be anyway."""
    if _provider is not None:
        flush = threading.Thread(target=_provider.shutdown, name="tracing-shutdown", daemon=True)
        flush.start()
        flush.join(timeout)


def use(tracer: trace.Tracer) -> None:
    """Tests: trace into `tracer` (say, one of an in-memory exporter's provider)."""
    global _tracer, enabled
    _choose_injection()
    _tracer, enabled = tracer, True


def _choose_injection() -> None:
    """W3C trace context alone (the default OTEL_PROPAGATORS): `start_send` writes `traceparent`
    itself, half the propagation API's cost per message (which copies contexts per call).
    Any other propagator setting goes through the API."""
    global _direct_w3c
    names = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(" ", "").lower()
    _direct_w3c = names in ("tracecontext,baggage", "baggage,tracecontext", "tracecontext")


# -- producer side -----------------------------------------------------------------------------


def start_send(
    stream: str,
    topic: str,
    properties: Mapping[str, str] | None,
    size: int,
    *,
    propagate_context: bool = True,
) -> tuple[Span, Mapping[str, str] | None]:
    """A `send` span (child of the current span) and the properties carrying its context."""
    span = _tracer.start_span(
        f"send {stream}",
        kind=SpanKind.PRODUCER,
        attributes=_attributes("send", "send", topic, {"messaging.message.body.size": size}),
    )
    if not propagate_context:
        return span, properties
    carrier = dict(properties or {})
    if _direct_w3c and not baggage.get_all():
        context = span.get_span_context()
        # what TraceContextTextMapPropagator writes (tests/client/test_tracing.py compares them)
        if context.is_valid:
            carrier["traceparent"] = (
                f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
            )
            if context.trace_state:
                carrier["tracestate"] = context.trace_state.to_header()
    else:
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


def end_send(span: Span, future: asyncio.Future[str]) -> None:
    """Done callback of a send's future: the message id, or the error."""
    if future.cancelled():
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
    elif (error := future.exception()) is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    else:
        span.set_attribute("messaging.message.id", future.result())
    span.end()


@contextlib.contextmanager
def server_span(name: str, headers: Mapping[str, str]) -> Iterator[None]:
    """An HTTP request's SERVER span, continuing the caller's trace (its `traceparent` header)."""
    if not enabled:
        yield
        return
    parent = propagate.extract(headers)
    with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", name.split(" ", 1)[0])
        yield


# -- consumer side -----------------------------------------------------------------------------


@contextlib.contextmanager
def process_span(message: Message, stream: str, topic: str, subscription: str) -> Iterator[Span | None]:
    """The current span while a message is handled, child of the producer's `send` span."""
    if not enabled:
        yield None
        return
    parent = propagate.extract(message.properties)
    with _tracer.start_as_current_span(
        f"process {stream}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=_attributes(
            "process",
            "process",
            topic,
            {
                "messaging.consumer.group.name": subscription,
                "messaging.message.id": message.id,
                "messaging.message.body.size": len(message.data),
                "messaging.pulsar.message.redelivery_count": message.redelivery_count,
            },
        ),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def current() -> otel_context.Context | None:
    """The current context, to parent work that outlives it (a delayed nack); None when off."""
    return otel_context.get_current() if enabled else None


def settle(
    operation: str, stream: str, topic: str, message: Message, parent: otel_context.Context | None = None
) -> None:
    """A short `ack`/`nack` span below the `process` span (the current one, or `parent`)."""
    if not enabled:
        return
    with _tracer.start_as_current_span(
        f"{operation} {stream}",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=_attributes("settle", operation, topic, {"messaging.message.id": message.id}),
    ):
        pass


def failed_attempt(span: Span | None, error: BaseException, attempt: int) -> None:
    if span is not None:
        span.record_exception(error, attributes={"messaging.streampair.attempt": attempt})
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def outcome(span: Span | None, result: str) -> None:
    if span is not None:
        span.set_attribute("messaging.streampair.outcome", result)
        if result == "handled":
            span.set_status(Status(StatusCode.OK))


# -- logs ------------------------------------------------------------------------------------


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: `trace_id` and `span_id` of the current span, when there is one."""
    if enabled:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event_dict["trace_id"] = format(span_context.trace_id, "032x")
            event_dict["span_id"] = format(span_context.span_id, "016x")
    return event_dict
