"""Tracing with the SDK's in-memory exporter: one trace from publish to processing (issue #17)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, SpanKind, StatusCode
from producer.app import ProducerService
from producer.settings import ProducerSettings
from streampair import ClientConfig, Connector, Consumer, Message, Producer, tracing
from streampair.processing import DeadLetterPolicy, Processor
from streampair.webserver import AppRunner

from harness import until

FOREIGN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # the W3C spec's example


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider.get_tracer("test"))
    try:
        yield exporter
    finally:
        tracing.enabled = False
        tracing._tracer = NoOpTracer()


@pytest.fixture
async def ws(tmp_path: Path) -> AsyncIterator[str]:
    async with running_broker(tmp_path / "data") as url:
        yield url.replace("http://", "ws://")


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def subscribe(ws: str, stream: str) -> None:
    connector = Connector(ClientConfig(url=ws, stream=stream))
    consumer = Consumer(connector, "sub")
    await consumer.connect()
    await consumer.close()
    await connector.close()


async def publish(ws: str, stream: str, data: bytes, properties: dict[str, str] | None = None) -> str:
    """One message, on a connection of its own; its id."""
    connector = Connector(ClientConfig(url=ws, stream=stream))
    async with Producer(connector) as producer:
        message_id = await producer.send(data, properties)
    await connector.close()
    return message_id


async def consume(ws: str, stream: str, count: int, policy: DeadLetterPolicy | None = None) -> list[Message]:
    connector = Connector(ClientConfig(url=ws, stream=stream, reconnect_max_seconds=0.2))
    consumer = Consumer(connector, "sub")
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)
        if "poison" in message.properties:
            raise ValueError("cannot take it")

    processor = Processor(consumer, handler, policy)
    done = 0
    async with asyncio.timeout(20):
        async for message in consumer:
            await processor.process(message)
            done += 1
            if done == count:
                break
    await processor.close()
    await consumer.close()
    await connector.close()
    return seen


async def test_send_and_process_share_one_trace(ws: str, spans: InMemorySpanExporter) -> None:
    await subscribe(ws, "orders")
    message_id = await publish(ws, "orders", b"hello", {"k": "v"})
    [message] = await consume(ws, "orders", 1)

    [send] = named(spans, "send orders")
    [process] = named(spans, "process orders")
    [ack] = named(spans, "ack orders")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.attributes is not None and process.attributes is not None
    assert send.attributes["messaging.system"] == "pulsar"
    assert send.attributes["messaging.destination.name"] == "persistent://public/default/orders"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.message.id"] == message_id
    assert send.attributes["messaging.message.body.size"] == 5
    assert process.attributes["messaging.consumer.group.name"] == "sub"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.message.id"] == message.id
    assert process.attributes["messaging.pulsar.message.redelivery_count"] == 0
    # The context travelled in the message: process is the child of send, ack of process.
    assert message.properties["traceparent"].split("-")[1] == format(send.context.trace_id, "032x")
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert ack.parent is not None and ack.parent.span_id == process.context.span_id
    assert ack.attributes is not None and ack.attributes["messaging.operation.type"] == "settle"
    assert message.properties["k"] == "v"


async def test_a_foreign_traceparent_is_continued(ws: str, spans: InMemorySpanExporter) -> None:
    """A message from another client (a traced Java producer) is processed under its trace."""
    await subscribe(ws, "interop")
    tracing.enabled = False  # publish as a client without our tracing would
    await publish(ws, "interop", b"from java", {"traceparent": FOREIGN})
    tracing.enabled = True
    await consume(ws, "interop", 1)
    [process] = named(spans, "process interop")
    assert format(process.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert process.parent is not None and format(process.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_failures_are_recorded_and_the_dead_letter_copy_keeps_the_trace(
    ws: str, spans: InMemorySpanExporter
) -> None:
    await subscribe(ws, "bad")
    await publish(ws, "bad", b"x", {"poison": "1"})
    policy = DeadLetterPolicy(max_delivery_attempts=2, first_delay_seconds=0.01)
    await consume(ws, "bad", 1, policy)
    [send] = named(spans, "send bad")
    [process] = named(spans, "process bad")
    [dead_letter] = named(spans, "send bad-sub-DLQ")
    assert process.status.status_code == StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception", "exception"]  # two attempts
    assert (
        process.attributes is not None
        and process.attributes["messaging.streampair.outcome"] == "dead_lettered"
    )
    assert dead_letter.parent is not None and dead_letter.parent.span_id == process.context.span_id
    # The copy carries the original traceparent, not the dead-letter send's own.
    copies = await consume_dlq(ws)
    assert copies[0].properties["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


async def consume_dlq(ws: str) -> list[Message]:
    from streampair import Reader

    connector = Connector(ClientConfig(url=ws, stream="bad-sub-DLQ"))
    reader = Reader(connector, "earliest")
    out: list[Message] = []
    async with asyncio.timeout(10):
        async for message in reader:
            out.append(message)
            break
    await reader.close()
    await connector.close()
    return out


async def test_the_standby_that_takes_over_processes_under_the_producers_trace(
    ws: str, spans: InMemorySpanExporter
) -> None:
    await subscribe(ws, "takeover")
    await publish(ws, "takeover", b"m")
    # The first consumer receives it and dies before acking it.
    first_connector = Connector(ClientConfig(url=ws, stream="takeover"))
    first = Consumer(first_connector, "sub")
    async for _ in first:
        break
    await first.close()
    await first_connector.close()
    await consume(ws, "takeover", 1)  # the next one on the subscription
    [send] = named(spans, "send takeover")
    [process] = named(spans, "process takeover")
    assert process.context.trace_id == send.context.trace_id


async def test_post_messages_continues_the_callers_trace(ws: str, spans: InMemorySpanExporter) -> None:
    service = ProducerService(ProducerSettings(stream_url=ws, publish_interval_seconds=3600))
    await service.producer.start()
    assert await until(lambda: service.producer.connected, 10)
    from aiohttp import web

    app = web.Application()
    app.add_routes(service.routes())
    runner = AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/messages"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"payload": "hi"}, headers={"traceparent": FOREIGN}) as response,
    ):
        assert response.status == 201
    await runner.cleanup()
    await service.producer.close()
    await service.connector.close()
    [server] = named(spans, "POST /messages")
    [send] = named(spans, "send streamQuickstart")
    assert format(server.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert send.parent is not None and send.parent.span_id == server.context.span_id


def test_logs_carry_the_current_trace(spans: InMemorySpanExporter) -> None:
    with tracing._tracer.start_as_current_span("work") as span:
        event = tracing.add_trace_ids(None, "info", {"event": "x"})
    assert event["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert event["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in tracing.add_trace_ids(None, "info", {"event": "y"})  # no span now


async def test_off_means_nothing_added_to_messages(ws: str) -> None:
    assert not tracing.enabled
    await subscribe(ws, "plain")
    await publish(ws, "plain", b"x", {"k": "v"})
    [message] = await consume(ws, "plain", 1)
    assert message.properties == {"k": "v"}


@pytest.mark.parametrize("with_baggage", [False, True])
def test_send_writes_the_context_as_the_w3c_propagator_does(
    spans: InMemorySpanExporter, with_baggage: bool
) -> None:
    """start_send writes `traceparent` itself (a faster path): the same properties as propagate.inject."""
    from opentelemetry import baggage, propagate, trace
    from opentelemetry import context as otel_context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    parent = SpanContext(
        1, 2, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")])
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    if with_baggage:
        context = baggage.set_baggage("tenant", "t1", context)
    token = otel_context.attach(context)
    try:
        span, carrier = tracing.start_send("s", "persistent://public/default/s", {"a": "b"}, 1)
        expected = {"a": "b"}
        propagate.inject(expected, context=trace.set_span_in_context(span, context))
    finally:
        otel_context.detach(token)
    span.end()
    assert carrier == expected
    assert carrier["tracestate"] == "k=v" and ("baggage" in carrier) == with_baggage
