"""Prometheus metrics of the stream client and the services, prefix `streampair_`.

One process is one producer or one consumer, so metrics are module-level singletons in the
default registry; labels are few and bounded (never a message id, key or URL).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from streampair import __version__

# Latency buckets from 0.5 ms to 10 s: loopback brokers answer in under a millisecond,
# a remote GDN region in tens of milliseconds, a stalled one in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BUILD_INFO = Info("streampair_build", "Version and service of this process")
BROKER_CONNECTED = Gauge("streampair_broker_connected", "1 while a WebSocket to the broker is open")
CONNECTION_ATTEMPTS = Counter(
    "streampair_connection_attempts",
    "WebSocket connection attempts by result (ok, busy, unauthorized, not_found, invalid, unavailable)",
    ["result"],
)
MESSAGES_PUBLISHED = Counter("streampair_messages_published", "Messages the broker acknowledged")
PUBLISH_ERRORS = Counter(
    "streampair_publish_errors", "Messages that could not be published, by reason", ["reason"]
)
PUBLISH_LATENCY = Histogram(
    "streampair_publish_latency_seconds", "From send to the broker's answer", buckets=LATENCY_BUCKETS
)
MESSAGES_RECEIVED = Counter("streampair_messages_received", "Messages delivered to this consumer")
MESSAGES_ACKED = Counter("streampair_messages_acked", "Acknowledgements sent")
MESSAGES_NACKED = Counter("streampair_messages_nacked", "Negative acknowledgements sent")
SUBSCRIPTION_REJECTIONS = Counter(
    "streampair_subscription_rejections",
    "Consumer handshakes the broker refused, by reason (consumer_busy, ...)",
    ["reason"],
)
CONSUMER_ACTIVE = Gauge(
    "streampair_consumer_active",
    "1 while this process holds the subscription and receives",
    ["subscription", "subscription_type"],
)
END_TO_END_LATENCY = Histogram(
    "streampair_end_to_end_latency_seconds",
    "From the producer's sent_at property to receipt by the consumer",
    buckets=LATENCY_BUCKETS,
)
DUPLICATES = Counter("streampair_duplicates", "Messages received again, by (producer_id, seq)")
SEQUENCE_GAPS = Counter("streampair_sequence_gaps", "Sequence numbers skipped, summed over gaps")
MALFORMED_FRAMES = Counter(
    "streampair_malformed_frames", "Frames from the broker that could not be understood, by kind", ["kind"]
)


def set_build_info(service: str) -> None:
    BUILD_INFO.info({"version": __version__, "service": service})
