"""Prometheus metrics of the stream client, prefix `streampair_`.

The series come in sets registered in the default registry by their first user: a process
that only publishes exports the producer's series and not the consumer's. Labels are few and
bounded (never a message id, key or URL). The services add their own series next to their
code (the consumer's role and sequence checks live in the consumer service).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.registry import Collector

from streampair import __version__

# `_created` series double every counter for a timestamp nobody here reads.
_disable_created_metrics()  # type: ignore[no-untyped-call]

# Latency buckets from 0.5 ms to 10 s: loopback brokers answer in under a millisecond,
# a remote GDN region in tens of milliseconds, a stalled one in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricSet:
    """Series that are exported together, from the first time a user asks for them."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors
        self._registries: set[int] = set()

    def register(self, registry: CollectorRegistry = REGISTRY) -> None:
        if id(registry) in self._registries:
            return
        for collector in self.collectors:
            registry.register(collector)
        self._registries.add(id(registry))


# Every series is made outside any registry (registry=None): a MetricSet registers it.


def _counter(name: str, help_text: str, *labels: str) -> Counter:
    return Counter(name, help_text, labels, registry=None)


def _gauge(name: str, help_text: str, *labels: str) -> Gauge:
    return Gauge(name, help_text, labels, registry=None)


BUILD_INFO = Info("streampair_build", "Version and service of this process", registry=None)
BROKER_CONNECTED = _gauge(
    "streampair_broker_connected",
    "1 while a connection to the broker is open, by endpoint (producer, consumer, reader)",
    "endpoint",
)
CONNECTION_ATTEMPTS = _counter(
    "streampair_connection_attempts",
    "Connection attempts by result (ok, busy, unauthorized, not_found, invalid, unavailable)",
    "result",
)
MALFORMED_FRAMES = _counter(
    "streampair_malformed_frames", "Frames from the broker that could not be understood, by kind", "kind"
)
CLIENT = MetricSet(BUILD_INFO, BROKER_CONNECTED, CONNECTION_ATTEMPTS, MALFORMED_FRAMES)

MESSAGES_PUBLISHED = _counter("streampair_messages_published", "Messages the broker acknowledged")
PUBLISH_ERRORS = _counter(
    "streampair_publish_errors", "Messages that could not be published, by reason", "reason"
)
PUBLISH_LATENCY = Histogram(
    "streampair_publish_latency_seconds",
    "From send to the broker's answer",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
PRODUCER = MetricSet(MESSAGES_PUBLISHED, PUBLISH_ERRORS, PUBLISH_LATENCY)

MESSAGES_RECEIVED = _counter("streampair_messages_received", "Messages delivered to this consumer")
MESSAGES_ACKED = _counter("streampair_messages_acked", "Acknowledgements sent")
MESSAGES_NACKED = _counter("streampair_messages_nacked", "Negative acknowledgements sent")
BLOCKED = _gauge(
    "streampair_consumer_blocked",
    "1 while a message larger than this consumer accepts (STREAM_MAX_FRAME_BYTES) blocks its subscription",
    "endpoint",
)
CONSUMER = MetricSet(MESSAGES_RECEIVED, MESSAGES_ACKED, MESSAGES_NACKED, BLOCKED)


def set_build_info(service: str) -> None:
    CLIENT.register()
    BUILD_INFO.info({"version": __version__, "service": service})
