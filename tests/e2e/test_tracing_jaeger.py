"""Tracing end to end against a real Jaeger v2 (issue #17): processes of ours, spans in Jaeger.

The embedded broker, a producer and a consumer run as the real entrypoints, exporting over
OTLP/HTTP to a Jaeger built from its Go module (scripts/jaeger-local; cached under .cache/jaeger,
minutes to build the first time). Jaeger's query API must return one trace holding the producer's
`send` span and the consumer's `process` span (its child) for a message the consumer logged, and
that log line must carry the trace's id. A POST /messages with a `traceparent` header continues the
caller's trace through both processes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness import Cluster
from harness.jaeger import JaegerLocal, build, go_missing

STREAM = "traced"
SEND, PROCESS, ACK = f"send {STREAM}", f"process {STREAM}", f"ack {STREAM}"
# Spans leave each process within 100 ms rather than the SDK's default 5 s.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}


@pytest.fixture(scope="module")
def jaeger_binary() -> str:
    reason = go_missing()
    if reason:
        pytest.skip(reason)
    return build()


# Tests take `jaeger` before `cluster`: it then stops after our processes, which export their last
# spans on the way out (to a Jaeger already gone, each would wait out the exporter's retries).
@pytest.fixture
async def jaeger(jaeger_binary: str) -> AsyncIterator[JaegerLocal]:
    backend = await JaegerLocal(jaeger_binary).start()
    try:
        yield backend
    finally:
        await backend.stop()


def traced(jaeger: JaegerLocal, service: str) -> dict[str, str]:
    return {**jaeger.env(), **FAST_EXPORT, "OTEL_SERVICE_NAME": service, "STREAM_NAME": STREAM}


@pytest.mark.timeout(1800)  # the first run builds Jaeger (cached afterwards: the test takes seconds)
async def test_one_trace_from_publish_to_processing_in_jaeger(jaeger: JaegerLocal, cluster: Cluster) -> None:
    await cluster.start_broker()
    consumer = await cluster.start_consumer("consumer-1", **traced(jaeger, "e2e-consumer"))
    await consumer.wait_http("/status", lambda s, b: s == 200 and b["role"] == "active")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.2", **traced(jaeger, "e2e-producer"))

    # A message the consumer logged: its `received` line names the trace it was processed under.
    received = await consumer.wait_for(lambda line: line.get("event") == "received" and "trace_id" in line)
    trace_id = received["trace_id"]
    spans = await jaeger.wait_trace(trace_id, {SEND, PROCESS, ACK})
    send, process, ack = spans[SEND], spans[PROCESS], spans[ACK]
    assert (send.service, process.service, ack.service) == ("e2e-producer", "e2e-consumer", "e2e-consumer")
    assert (send.kind, process.kind) == ("producer", "consumer")
    assert process.parent_id == send.span_id, "process must be the child of the producer's send"
    assert ack.parent_id == process.span_id
    assert received["span_id"] == process.span_id
    assert process.tags["messaging.message.id"] == received["message_id"] == send.tags["messaging.message.id"]
    assert send.tags["messaging.destination.name"] == f"persistent://public/default/{STREAM}"
    # The consumer logged the very message the producer published: the message id ties them.
    assert [e for e in producer.events("published") if e.get("message_id") == received["message_id"]]
    assert received["properties"]["traceparent"].startswith(f"00-{trace_id}-{send.span_id}-")
    assert set(await jaeger.services()) >= {"e2e-producer", "e2e-consumer"}


@pytest.mark.timeout(1800)
async def test_post_messages_continues_the_callers_trace_through_both_processes(
    jaeger: JaegerLocal, cluster: Cluster
) -> None:
    await cluster.start_broker()
    consumer = await cluster.start_consumer("consumer-1", **traced(jaeger, "e2e-consumer"))
    await consumer.wait_http("/status", lambda s, b: s == 200 and b["role"] == "active")
    # Publishing only what is POSTed: one message an hour from the loop.
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="3600", **traced(jaeger, "e2e-producer"))
    await producer.wait_http("/readyz", lambda s, _: s == 200)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    status, body = await post(producer.url, {"payload": "traced hello"}, f"00-{trace_id}-{caller_span}-01")
    assert status == 201, body
    received = await consumer.wait_for(
        lambda line: line.get("event") == "received" and line.get("payload") == "traced hello"
    )
    assert received["trace_id"] == trace_id, "the consumer's log line carries the caller's trace id"
    spans = await jaeger.wait_trace(trace_id, {"POST /messages", SEND, PROCESS, ACK})
    server, send, process = spans["POST /messages"], spans[SEND], spans[PROCESS]
    assert server.service == "e2e-producer" and server.kind == "server"
    assert server.parent_id == caller_span, "the server span continues the caller's span"
    assert send.parent_id == server.span_id
    assert process.parent_id == send.span_id and process.service == "e2e-consumer"
    assert spans[ACK].parent_id == process.span_id


async def post(base: str, body: dict[str, Any], traceparent: str) -> tuple[int, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
        session.post(f"{base}/messages", json=body, headers={"traceparent": traceparent}) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_an_unreachable_collector_does_not_hold_up_the_exit(cluster: Cluster) -> None:
    """The exporter retries a dead endpoint for up to 10 s; a SIGTERM still ends the service within
    its SHUTDOWN_TIMEOUT_SECONDS (for the spans) plus the usual shutdown."""
    import signal
    import time

    from harness import free_port

    await cluster.start_broker()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    producer = await cluster.start_producer(
        PUBLISH_INTERVAL_SECONDS="0.05",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=dead,
        SHUTDOWN_TIMEOUT_SECONDS="1",
        **FAST_EXPORT,
    )
    await producer.wait_for(lambda line: line.get("event") == "published")
    started = time.monotonic()
    producer.signal(signal.SIGTERM)
    assert await producer.wait_exit(15) == 0
    assert time.monotonic() - started < 5, "the exit waited out the exporter's retries"
