"""The consumer service: a StandbyLoop behind the shared runtime."""

from __future__ import annotations

from typing import Any

from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.runtime import ServiceContext, ServiceRuntime

from consumer.handler import MessageHandler
from consumer.settings import ConsumerSettings
from consumer.standby import StandbyLoop


async def work(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, ConsumerSettings)
    connector = Connector(settings)
    consumer = Consumer(
        connector,
        settings.subscription_name,
        settings.subscription_type,
        consumer_name=settings.consumer_name,
        receiver_queue_size=settings.receiver_queue_size,
        priority_level=settings.priority_level,
    )
    handler = MessageHandler(log_payloads=settings.log_payloads)
    loop = StandbyLoop(consumer, handler, settings, ctx.status)
    ctx.status.extra["consumer_name"] = settings.consumer_name

    def counters() -> dict[str, Any]:
        return {
            "received": handler.received,
            "duplicates": handler.tracker.duplicates,
            "sequence_gaps": handler.tracker.gaps,
            "missing": handler.tracker.missing,
            "rejections": loop.rejections,
            "active_since": loop.became_active_at,
        }

    ctx.status.counters = counters
    try:
        await loop.run(ctx.stopping)
    finally:
        await connector.close()


def build_runtime(settings: ConsumerSettings) -> ServiceRuntime:
    return ServiceRuntime("consumer", settings, work)
