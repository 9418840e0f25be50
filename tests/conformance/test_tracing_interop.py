"""A traced Java client and our consumer in one trace, on a real Apache Pulsar (issue #17).

Pulsar's own Java client (binary protocol), run with the OpenTelemetry Java agent from Maven
Central, publishes one message; the agent's Pulsar instrumentation makes its `publish` span and
writes the span's context into the message's properties. Our consumer service reads the message
over the WebSocket API and must process it under that trace: Jaeger (scripts/jaeger-local) then
holds the Java client's span and our `process` span below it, and the consumer's log line names the
trace. The fixed-header case (tests/client/test_tracing.py) checks the format; this checks the
real thing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import ROOT, Cluster
from harness.jaeger import JaegerLocal, build, go_missing
from tests.conformance.conftest import unique

pytestmark = pytest.mark.pulsar

AGENT_VERSION = "2.10.0"  # io.opentelemetry.javaagent:opentelemetry-javaagent, from Maven Central
AGENT_DIR = ROOT / ".cache" / "otel-javaagent"
SOURCE = Path(__file__).parent / "interop" / "TracedPublish.java"
PULSAR_LIB = ROOT / ".cache" / "pulsar" / "lib"  # the jars scripts/pulsar-standalone assembled


def fetch_agent() -> Path:
    jar = AGENT_DIR / f"opentelemetry-javaagent-{AGENT_VERSION}.jar"
    if not jar.is_file():
        mvn = shutil.which("mvn")
        if mvn is None:
            pytest.skip("mvn not found: install Maven (Debian: maven) to fetch the OpenTelemetry Java agent")
        artifact = f"io.opentelemetry.javaagent:opentelemetry-javaagent:{AGENT_VERSION}"
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={AGENT_DIR}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return jar


@pytest.fixture(scope="module")
def java_publisher(tmp_path_factory: pytest.TempPathFactory, pulsar_url: str) -> tuple[Path, Path]:
    """(the agent's jar, the compiled TracedPublish classes); `pulsar_url` first: it assembles the jars."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.skip("javac not found: install a JDK 17 (Debian: openjdk-17-jdk-headless)")
    agent = fetch_agent()
    classes = tmp_path_factory.mktemp("traced-publish")
    result = subprocess.run(
        [javac, "-cp", f"{PULSAR_LIB}/*", "-d", str(classes), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return agent, classes


@pytest.fixture
async def jaeger() -> AsyncIterator[JaegerLocal]:
    reason = go_missing()
    if reason:
        pytest.skip(reason)
    backend = await JaegerLocal(await asyncio.to_thread(build)).start()
    try:
        yield backend
    finally:
        await backend.stop()


def binary_service_url(http_base: str) -> str:
    """pulsar://host:port of the broker, as its cluster metadata names it."""
    with urllib.request.urlopen(f"{http_base}/admin/v2/clusters/standalone", timeout=10) as response:
        url = str(json.load(response)["brokerServiceUrl"])
    return url


@pytest.mark.timeout(1800)  # the first run downloads the agent (22 MB) and may build Jaeger
async def test_a_traced_java_producers_message_is_processed_under_its_trace(
    jaeger: JaegerLocal, pulsar_url: str, java_publisher: tuple[Path, Path], tmp_path: Path
) -> None:
    agent, classes = java_publisher
    stream, subscription = unique("traced-java"), unique("traced-java-sub")
    cluster = Cluster(tmp_path, STREAM_URL="ws" + pulsar_url.removeprefix("http"))
    try:
        consumer = await cluster.start_consumer(
            "consumer-1",
            STREAM_NAME=stream,
            SUBSCRIPTION_NAME=subscription,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_SERVICE_NAME="py-consumer",
        )
        await consumer.wait_http("/status", lambda s, b: s == 200 and b["role"] == "active", 30)

        java_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "OTEL_SERVICE_NAME": "java-producer",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_JAVAAGENT_LOGGING": "none",
        }
        command = [
            "java",
            f"-javaagent:{agent}",
            "-cp",
            f"{classes}:{PULSAR_LIB}/*",
            "TracedPublish",
            await asyncio.to_thread(binary_service_url, pulsar_url),
            f"persistent://public/default/{stream}",
            "hello from java",
        ]
        published = await asyncio.to_thread(
            subprocess.run, command, env=java_env, capture_output=True, text=True, timeout=120, check=False
        )
        assert published.returncode == 0, published.stdout[-2000:] + published.stderr[-3000:]

        received = await consumer.wait_for(
            lambda line: line.get("event") == "received" and line.get("payload") == "hello from java", 30
        )
        properties = received["properties"]
        assert properties["origin"] == "java"
        traceparent = properties.get("traceparent")
        assert traceparent, f"the Java agent wrote no traceparent: {properties}"
        _, trace_id, java_span, _ = traceparent.split("-")
        assert received["trace_id"] == trace_id, "the consumer's log line names the Java client's trace"

        spans = await jaeger.wait_trace(trace_id, {f"process {stream}"}, timeout=30)
        process = spans[f"process {stream}"]
        assert process.service == "py-consumer"
        assert process.parent_id == java_span, "process is the child of the span the Java client propagated"
        everything = await jaeger.trace(trace_id)
        java = [s for s in everything if s.service == "java-producer"]
        assert [s.span_id for s in java if s.kind == "producer"] == [java_span], [
            (s.name, s.kind) for s in everything
        ]
    finally:
        await cluster.stop()
