"""`GET /metrics`: Prometheus text, prefix `streampair_broker_`, from a registry of this broker.

Values are read from the broker at scrape time (a custom collector), so the hot path only
bumps plain integers. Each broker app has its own registry: several brokers in one test
process, or a broker beside the client library, never mix their series. Labels are bounded:
topic and subscription names (as many as exist), frame kinds, roles and HTTP statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.broker import Broker, Stats
from broker.subscriptions import Subscription

P = "streampair_broker_"
M = TypeVar("M", CounterMetricFamily, GaugeMetricFamily)


#: Per-subscription gauges: name, help, the value of one subscription.
SUBSCRIPTION_GAUGES: tuple[tuple[str, str, Callable[[Subscription], int]], ...] = (
    (
        "subscription_backlog_messages",
        "Messages not yet acknowledged, per subscription",
        lambda s: s.backlog(),
    ),
    ("subscription_consumers", "Consumers attached, per subscription", lambda s: len(s.consumers)),
    (
        "subscription_unacked_messages",
        "Delivered and not yet acknowledged, per subscription",
        lambda s: len(s.pending),
    ),
)

#: Counters of the broker's Stats: name, help, the value.
COUNTERS: tuple[tuple[str, str, Callable[[Stats], int]], ...] = (
    ("messages_published", "Messages committed and acknowledged to producers", lambda s: s.published),
    ("published_payload_bytes", "Payload bytes received for publishing", lambda s: s.published_bytes),
    ("messages_dispatched", "Messages sent to consumers and readers", lambda s: s.dispatched),
    ("commits", "Group commits written to storage", lambda s: s.commits),
    (
        "commit_failures",
        "Group commits that failed (their publishes got send-error:8)",
        lambda s: s.commit_failures,
    ),
)


class BrokerCollector(Collector):
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self._broker
        stats = broker.stats
        topics = list(broker.topics.values())
        yield GaugeMetricFamily(P + "topics", "Topics that exist", value=len(topics))
        for name, help_text, value in SUBSCRIPTION_GAUGES:
            gauge = GaugeMetricFamily(P + name, help_text, labels=["topic", "subscription"])
            for topic in topics:
                for sub in list(topic.subscriptions.values()):
                    gauge.add_metric([topic.name, sub.name], value(sub))
            yield gauge
        retained = GaugeMetricFamily(
            P + "topic_retained_messages",
            "Messages kept (in memory and on disk), per topic",
            labels=["topic"],
        )
        for topic in topics:
            retained.add_metric([topic.name], len(topic.entries))
        yield retained
        for name, help_text, count in COUNTERS:
            yield CounterMetricFamily(P + name, help_text, value=count(stats))
        yield _by_label(
            CounterMetricFamily(
                P + "bad_frames",
                "Frames that could not be used (json, payload, ack, nack, permit)",
                labels=["kind"],
            ),
            {(kind,): count for kind, count in stats.bad_frames.items()},
        )
        yield _by_label(
            CounterMetricFamily(
                P + "handshake_rejections",
                "WebSocket upgrades refused, by role and status",
                labels=["role", "status"],
            ),
            {(role, str(status)): count for (role, status), count in stats.rejections.items()},
        )
        yield _by_label(
            GaugeMetricFamily(P + "connections", "Open WebSockets by role", labels=["role"]),
            {(role,): count for role, count in stats.connections.items()},
        )
        yield GaugeMetricFamily(
            P + "storage_bytes", "Size of the database files", value=broker.store.size_bytes()
        )


def _by_label(family: M, counts: dict[tuple[str, ...], int]) -> M:
    """`family` with one sample per label values, in their sorted order."""
    for labels, count in sorted(counts.items()):
        family.add_metric(list(labels), count)
    return family


def make_registry(broker: Broker) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker))
    return registry


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics(request: web.Request, _: dict[str, str]) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
