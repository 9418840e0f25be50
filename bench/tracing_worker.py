"""The two sides of bench/tracing.py's workloads, each run as its own process.

`python -m bench.tracing_worker '<json spec>'` publishes or consumes `count` messages with tracing
as the environment says (OTEL_TRACES_EXPORTER), or with spans made and dropped (`"mode": "no_export"`),
and prints one JSON line: {"ready": true} once a consumer is subscribed, then {"result": ...} or
{"error": ...}. The producer pipelines `streampair.Producer.send_async` (one `send` span each); the
consumer runs every message through `streampair.processing.Processor` (a `process` and an `ack` span).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

PAYLOAD = b"x" * 100


def _count_exports() -> dict[str, int]:
    """Count what the exporter behind the BatchSpanProcessor delivers (bench only: it wraps the
    exporter handed to the processor, whichever exporter class the library chose)."""
    from opentelemetry.sdk.trace import export as sdk_export

    counts = {"exported": 0, "failed": 0}
    init = sdk_export.BatchSpanProcessor.__init__

    def counting_init(self: Any, span_exporter: Any, *args: Any, **kwargs: Any) -> None:
        export = span_exporter.export

        def counting(spans: Any) -> Any:
            result = export(spans)
            counts["exported" if result is sdk_export.SpanExportResult.SUCCESS else "failed"] += len(spans)
            return result

        span_exporter.export = counting
        init(self, span_exporter, *args, **kwargs)

    sdk_export.BatchSpanProcessor.__init__ = counting_init  # type: ignore[method-assign]
    return counts


async def _publish(spec: dict[str, Any]) -> dict[str, Any]:
    from streampair import ClientConfig, Connector, Producer

    count = int(spec["count"])
    connector = Connector(ClientConfig(url=spec["url"], stream=spec["topic"], connect_timeout_seconds=10))
    producer = Producer(connector, max_pending=1000)
    try:
        await producer.start()
        await asyncio.wait_for(producer.wait_connected(), 15)
        await producer.send(PAYLOAD)  # the topic exists and the connection is warm
        futures: list[asyncio.Future[str]] = []
        wall0, t0, cpu0 = time.time(), time.monotonic(), time.process_time()
        for _ in range(count):
            futures.append(await producer.send_async(PAYLOAD, {"sent_ns": str(time.time_ns())}))
        await asyncio.gather(*futures)
        seconds = time.monotonic() - t0
        cpu = time.process_time() - cpu0
    finally:
        await producer.close()
        await connector.close()
    return {
        "start": wall0,
        "seconds": seconds,
        "msgs_per_s": count / seconds,
        "cpu_s": cpu,
        "sent": count + 1,  # the warm-up message too
    }


async def _consume(spec: dict[str, Any]) -> dict[str, Any]:
    from streampair import ClientConfig, Connector, Consumer, Message
    from streampair.processing import Processor

    count = int(spec["count"])
    connector = Connector(ClientConfig(url=spec["url"], stream=spec["topic"], connect_timeout_seconds=10))
    consumer = Consumer(connector, spec["subscription"], "Exclusive")
    received = 0
    last = 0.0

    async def handler(_: Message) -> None:
        nonlocal received, last
        received += 1
        last = time.time()

    processor = Processor(consumer, handler)
    try:
        await consumer.connect_with_retry()
        print(json.dumps({"ready": True}), flush=True)
        watchdog = asyncio.get_running_loop().call_later(float(spec["timeout"]), consumer.interrupt)
        async for message in consumer:
            await processor.process(message)
            if received >= count:
                break
        watchdog.cancel()
    finally:
        await processor.close()
        await consumer.close()
        await connector.close()
    return {"received": received, "last": last}


class _Discard:
    """A span exporter that drops everything: spans made and queued, never encoded or sent."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        from streampair import tracing
    except ImportError:  # a library from before tracing (the baseline of docs/tracing.md's figures)
        return asyncio.run((_publish if spec["role"] == "publish" else _consume)(spec))

    exporter = os.environ.get("OTEL_TRACES_EXPORTER")
    counts = _count_exports() if exporter == "otlp" else None
    if spec.get("mode") == "no_export":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
        tracing.use(provider.get_tracer("streampair"))
    else:
        tracing.configure(f"bench-{spec['role']}", exporter)
    run = _publish if spec["role"] == "publish" else _consume
    try:
        result = asyncio.run(run(spec))
    finally:
        tracing.shutdown()  # exports what is queued (bounded by the SDK's timeout)
    if tracing.enabled:  # spans made: one `send` per message; `process` and `ack` per message
        result["spans"] = result["sent"] if spec["role"] == "publish" else 2 * result["received"]
    if counts is not None:
        result.update(counts)
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    try:
        result = worker(spec)
    except Exception as error:  # reported to the driver, which records it
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}), flush=True)
        return 1
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
