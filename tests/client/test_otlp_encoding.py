"""streampair.otlp: the fast span encoder writes what the SDK's OTLP encoder writes (issue #17)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from streampair.otlp import SpanEncoder, StreampairSpanExporter

from harness import serve_app

SCALARS = st.one_of(
    st.text(max_size=300),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)


@pytest.fixture
def recorded() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "streampair-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("streampair", "1.0"), exporter
    provider.shutdown()


def same(spans: list[ReadableSpan]) -> None:
    fast = SpanEncoder().encode(spans)
    assert fast is not None
    assert ExportTraceServiceRequest.FromString(fast) == encode_spans(spans)


def test_the_spans_of_a_message_encode_as_the_sdk_does(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = recorded
    remote = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x1"), ("other", "y")]),
    )
    with tracer.start_as_current_span(
        "POST /messages", context=trace.set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.SERVER
    ):
        send = tracer.start_span(
            "send orders",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "pulsar",
                "messaging.message.body.size": 5,
                "flag": True,
                "ratio": 0.5,
            },
        )
        send.set_attribute("messaging.message.id", "CAEQAQ==")
        send.end()
    process = tracer.start_span("process orders", kind=SpanKind.CONSUMER, attributes={"n": -3, "empty": ""})
    process.set_status(Status(StatusCode.ERROR, "ValueError"))
    process.end()
    ok = tracer.start_span("ack orders", kind=SpanKind.CLIENT)
    ok.set_status(Status(StatusCode.OK))
    ok.end()
    tracer.start_span("internal").end()
    spans = list(exporter.get_finished_spans())
    assert len(spans) == 5
    same(spans)
    same(spans[1:2])  # one span; and again with everything cached
    encoder = SpanEncoder()
    assert encoder.encode(spans) == encoder.encode(spans)


@given(
    attributes=st.dictionaries(st.text(min_size=1, max_size=40), SCALARS, max_size=8),
    name=st.text(max_size=200),
)
@settings(max_examples=60, deadline=None)
def test_any_scalar_attributes_encode_as_the_sdk_does(attributes: dict[str, object], name: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span(name, attributes=attributes).end()  # type: ignore[arg-type]
    same(list(exporter.get_finished_spans()))


def test_what_it_does_not_write_is_left_to_the_sdk(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = recorded
    with tracer.start_as_current_span("process x") as span:
        span.record_exception(ValueError("boom"))  # an event
    tracer.start_span("arrays", attributes={"list": [1, 2]}).end()
    for one in exporter.get_finished_spans():
        assert SpanEncoder().encode([one]) is None


async def test_the_exporter_sends_what_the_encoder_wrote(
    recorded: tuple[trace.Tracer, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer, exporter = recorded
    tracer.start_span("send orders", kind=SpanKind.PRODUCER, attributes={"a": "b"}).end()
    with tracer.start_as_current_span("process orders") as span:
        span.record_exception(ValueError("boom"))  # this batch goes through the SDK's encoder
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    async with serve_app(app) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        otlp = StreampairSpanExporter()
        first, second = exporter.get_finished_spans()
        import asyncio

        assert await asyncio.to_thread(otlp.export, [first]) is SpanExportResult.SUCCESS
        assert await asyncio.to_thread(otlp.export, [second]) is SpanExportResult.SUCCESS
        otlp.shutdown()
    assert received == [encode_spans([first]), encode_spans([second])]
