"""The consumer service: a StandbyLoop behind the shared runtime."""

from __future__ import annotations

from typing import Any

from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.runtime import ServiceContext, ServiceRuntime, ServiceStatus

from consumer.handler import MessageHandler
from consumer.settings import ConsumerSettings
from consumer.standby import StandbyLoop


class ConsumerService:
    """One consumer process: its subscription, its handler and the loop that owns its status."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        self.status = ServiceStatus(
            "consumer",
            details={
                "subscription": settings.subscription_name,
                "subscription_type": settings.subscription_type,
                "consumer_name": settings.consumer_name,
            },
        )
        self.status.counters = self.counters
        self.connector = Connector(settings.client_config())
        self.consumer = Consumer(
            self.connector,
            settings.subscription_name,
            settings.subscription_type,
            consumer_name=settings.consumer_name,
            receiver_queue_size=settings.receiver_queue_size,
            priority_level=settings.priority_level,
        )
        self.handler = MessageHandler(log_payloads=settings.log_payloads)
        self.loop = StandbyLoop(self.consumer, self.handler, settings, self.status)

    def counters(self) -> dict[str, Any]:
        return {
            "received": self.handler.received,
            "duplicates": self.handler.tracker.duplicates,
            "sequence_gaps": self.handler.tracker.gaps,
            "missing": self.handler.tracker.missing,
            "rejections": self.loop.rejections,
            "active_since": self.loop.became_active_at,
        }

    async def run(self, ctx: ServiceContext) -> None:
        try:
            await self.loop.run(ctx.stopping)
        finally:
            await self.connector.close()


def build_runtime(settings: ConsumerSettings) -> ServiceRuntime:
    service = ConsumerService(settings)
    return ServiceRuntime("consumer", settings, service.run, status=service.status)
