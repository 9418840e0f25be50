"""`GET /metrics`: Prometheus text, prefix `streampair_broker_`, from a registry of this broker.

Values are read from the broker at scrape time (a custom collector), so the hot path only
bumps plain integers. Each broker app has its own registry: several brokers in one test
process, or a broker beside the client library, never mix their series. Labels are bounded:
topic and subscription names (as many as exist), frame kinds, roles and HTTP statuses.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.broker import Broker

P = "streampair_broker_"


class BrokerCollector(Collector):
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self._broker
        stats = broker.stats
        yield GaugeMetricFamily(P + "topics", "Topics that exist", value=len(broker.topics))
        backlog = GaugeMetricFamily(
            P + "subscription_backlog_messages",
            "Messages not yet acknowledged, per subscription",
            labels=["topic", "subscription"],
        )
        consumers = GaugeMetricFamily(
            P + "subscription_consumers",
            "Consumers attached, per subscription",
            labels=["topic", "subscription"],
        )
        unacked = GaugeMetricFamily(
            P + "subscription_unacked_messages",
            "Delivered and not yet acknowledged, per subscription",
            labels=["topic", "subscription"],
        )
        retained = GaugeMetricFamily(
            P + "topic_retained_messages",
            "Messages kept (in memory and on disk), per topic",
            labels=["topic"],
        )
        for topic in list(broker.topics.values()):
            retained.add_metric([topic.name], len(topic.entries))
            for sub in list(topic.subscriptions.values()):
                backlog.add_metric([topic.name, sub.name], sub.backlog())
                consumers.add_metric([topic.name, sub.name], len(sub.consumers))
                unacked.add_metric([topic.name, sub.name], len(sub.pending))
        yield backlog
        yield consumers
        yield unacked
        yield retained
        yield CounterMetricFamily(
            P + "messages_published",
            "Messages committed and acknowledged to producers",
            value=stats.published,
        )
        yield CounterMetricFamily(
            P + "published_payload_bytes",
            "Payload bytes received for publishing",
            value=stats.published_bytes,
        )
        yield CounterMetricFamily(
            P + "messages_dispatched", "Messages sent to consumers and readers", value=stats.dispatched
        )
        yield CounterMetricFamily(P + "commits", "Group commits written to storage", value=stats.commits)
        yield CounterMetricFamily(
            P + "commit_failures",
            "Group commits that failed (their publishes got send-error:8)",
            value=stats.commit_failures,
        )
        bad = CounterMetricFamily(
            P + "bad_frames",
            "Frames that could not be used (json, payload, ack, nack, permit)",
            labels=["kind"],
        )
        for kind, count in sorted(stats.bad_frames.items()):
            bad.add_metric([kind], count)
        yield bad
        rejected = CounterMetricFamily(
            P + "handshake_rejections",
            "WebSocket upgrades refused, by role and status",
            labels=["role", "status"],
        )
        for (role, status), count in sorted(stats.rejections.items()):
            rejected.add_metric([role, str(status)], count)
        yield rejected
        connections = GaugeMetricFamily(P + "connections", "Open WebSockets by role", labels=["role"])
        for role, count in sorted(stats.connections.items()):
            connections.add_metric([role], count)
        yield connections
        yield GaugeMetricFamily(
            P + "storage_bytes", "Size of the database files", value=broker.store.size_bytes()
        )


def make_registry(broker: Broker) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker))
    return registry


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics(request: web.Request, _: dict[str, str]) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
