"""The consumer service: a StandbyLoop behind the shared runtime."""

from __future__ import annotations

from typing import Any

from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.processing import Processor
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
            # Shared and Key_Shared: the processor waits out the retry delay itself, then nacks;
            # the broker should redeliver at once (100 ms is Pulsar's smallest nack delay).
            negative_ack_redelivery_delay_ms=100,
        )
        ordered = settings.subscription_type in ("Exclusive", "Failover")
        self.handler = MessageHandler(
            log_payloads=settings.log_payloads, ordered=ordered, fail_on_property=settings.fail_on_property
        )
        self.processor = Processor(self.consumer, self.handler.handle, settings.dead_letter_policy())
        self.status.details["dead_letter_stream"] = self.processor.dead_letter_stream
        self.loop = StandbyLoop(self.consumer, self.processor, settings, self.status)

    def counters(self) -> dict[str, Any]:
        return {
            "received": self.handler.received,
            "duplicates": self.handler.tracker.duplicates,
            "sequence_gaps": self.handler.tracker.gaps,
            "missing": self.handler.tracker.missing,
            "sequence_resets": self.handler.tracker.resets,
            "malformed_properties": self.handler.malformed,
            "handler_errors": self.processor.handler_errors,
            "dead_lettered": self.processor.dead_lettered,
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
