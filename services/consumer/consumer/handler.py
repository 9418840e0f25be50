"""What the consumer does with each message: log it, measure it, check its sequence."""

from __future__ import annotations

import time

from streampair.logs import get_logger
from streampair.message import Message

from consumer import metrics
from consumer.tracking import SequenceTracker

log = get_logger("consumer.handler")


class MessageHandler:
    def __init__(self, log_payloads: bool = True) -> None:
        self.tracker = SequenceTracker()
        self.received = 0
        self.log_payloads = log_payloads

    async def handle(self, message: Message) -> None:
        self.received += 1
        props = message.properties
        verdict = None
        producer_id, seq = props.get("producer_id"), props.get("seq")
        if producer_id is not None and seq is not None and seq.isdigit():
            verdict = self.tracker.observe(producer_id, int(seq))
        latency_ms = None
        sent_at = props.get("sent_at")
        if sent_at is not None and sent_at.isdigit() and verdict != "duplicate":
            latency = time.time() - int(sent_at) / 1000
            if latency >= 0:
                metrics.END_TO_END_LATENCY.observe(latency)
                latency_ms = round(latency * 1000, 1)
        if self.log_payloads:
            log.info(
                "received",
                payload=message.text()[:1000],
                properties=props,
                key=message.key,
                message_id=message.id,
                redelivery_count=message.redelivery_count,
                latency_ms=latency_ms,
                verdict=verdict,
            )
