"""Consumer settings: where the stream is (shared), which subscription, and what to do when busy."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from pydantic import Field
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
