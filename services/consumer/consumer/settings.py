"""Consumer settings: the shared stream settings plus what to do when the subscription is busy."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from pydantic import Field
from streampair.config import StreamSettings


class ConsumerSettings(StreamSettings):
    standby_retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    on_busy: Literal["standby", "exit"] = "standby"
    consumer_name: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default_factory=socket.gethostname
    )
    receiver_queue_size: Annotated[int, Field(ge=1, le=1000)] = 1000
    priority_level: Annotated[int, Field(ge=0, le=1000)] | None = None
    log_payloads: bool = True
