"""The consumer service's own series: its role and what the sequence checks find.

Registered in the default registry on import; only the consumer process imports this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Enum, Gauge, Histogram
from streampair.metrics import LATENCY_BUCKETS

ROLE = Enum(
    "streampair_consumer_role", "Role of this consumer process", states=["connecting", "active", "standby"]
)
ACTIVE = Gauge(
    "streampair_consumer_active",
    "1 while this process holds the subscription and receives",
    ["subscription", "subscription_type"],
)
SUBSCRIPTION_REJECTIONS = Counter(
    "streampair_subscription_rejections",
    "Consumer handshakes the broker refused, by reason (consumer_busy, ...)",
    ["reason"],
)
END_TO_END_LATENCY = Histogram(
    "streampair_end_to_end_latency_seconds",
    "From the producer's sent_at property to receipt by the consumer",
    buckets=LATENCY_BUCKETS,
)
DUPLICATES = Counter("streampair_duplicates", "Messages received again, by (producer_id, seq)")
SEQUENCE_GAPS = Counter("streampair_sequence_gaps", "Sequence numbers skipped, summed over gaps")
SEQUENCE_RESETS = Counter(
    "streampair_sequence_resets", "Jumps in a producer's sequence taken as a restart (not counted as gaps)"
)
MALFORMED_PROPERTIES = Counter(
    "streampair_malformed_properties",
    "Messages whose seq, sent_at or producer_id property is not well-formed (treated as absent), by property",
    ["property"],
)
# Born at 0, so that increase() (the MalformedProperties alert) sees the first malformed message:
# a series that first appears at 1 shows no increase.
for _property in ("producer_id", "seq", "sent_at"):
    MALFORMED_PROPERTIES.labels(property=_property)
