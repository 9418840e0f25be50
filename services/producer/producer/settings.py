"""Producer settings: where the stream is (shared), and how and how often to publish."""

from __future__ import annotations

import socket
import uuid
from typing import Annotated

from pydantic import Field
from streampair.settings import ServiceSettings


def default_producer_id() -> str:
    # The hostname names the pod or container; the suffix keeps a restarted process (whose
    # seq starts again at 1) apart from its predecessor in consumers' duplicate detection.
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class ProducerSettings(ServiceSettings):
    publish_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    producer_id: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default_factory=default_producer_id
    )
    max_in_flight: Annotated[int, Field(ge=1, le=10000)] = 1000
    send_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
