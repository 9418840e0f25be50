"""Consumer settings: where the stream is (shared), which subscription, and what to do when busy."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from streampair.config import BINARY_SCHEMES
from streampair.processing import DeadLetterPolicy
from streampair.protocol import MAX_RECEIVER_QUEUE, SubscriptionType
from streampair.settings import Name, ServiceSettings


class ConsumerSettings(ServiceSettings):
    subscription_name: Name = "consumer-subscription"
    subscription_type: SubscriptionType = "Exclusive"
    standby_retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    on_busy: Literal["standby", "exit"] = "standby"
    consumer_name: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default_factory=socket.gethostname
    )
    receiver_queue_size: Annotated[int, Field(ge=1, le=MAX_RECEIVER_QUEUE)] = MAX_RECEIVER_QUEUE
    priority_level: Annotated[int, Field(ge=0, le=1000)] | None = None
    log_payloads: bool = True
    #: Handler attempts before a message goes to the dead-letter stream; 0 = retry forever.
    max_delivery_attempts: Annotated[int, Field(ge=0, le=1000)] = 5
    dead_letter_stream: Name | None = None
    retry_delay_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    retry_max_delay_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    #: Demos and fault-injection tests: a message carrying this property fails in the handler.
    fail_on_property: (
        Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")] | None
    ) = None

    @field_validator("dead_letter_stream")
    @classmethod
    def _dlq_not_dots(cls, value: str | None) -> str | None:
        if value is not None and set(value) == {"."}:
            raise ValueError("must not be only dots")
        return value

    @model_validator(mode="after")
    def _priority_needs_websocket(self) -> ConsumerSettings:
        if self.priority_level is not None and self.stream_url.startswith(BINARY_SCHEMES):
            raise ValueError(
                "PRIORITY_LEVEL is not available with a pulsar:// STREAM_URL (pulsar-client does not "
                "expose consumer priority): unset it, or use the WebSocket API (ws:// URL)"
            )
        return self

    def dead_letter_policy(self) -> DeadLetterPolicy:
        return DeadLetterPolicy(
            max_delivery_attempts=self.max_delivery_attempts,
            stream=self.dead_letter_stream,
            first_delay_seconds=self.retry_delay_seconds,
            max_delay_seconds=self.retry_max_delay_seconds,
        )
