"""A delivered message, the same whichever transport delivered it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

#: Opaque: echo it to the broker exactly as received (WebSocket: base64 of Pulsar's MessageIdData).
MessageId = str


@dataclass(frozen=True)
class Message:
    """One delivered message."""

    id: MessageId
    data: bytes
    properties: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    publish_time: datetime | None = None
    #: How many times the broker delivered it before (0 the first time).
    redelivery_count: int = 0
    #: Which connection delivered it: an ack on a later connection is meaningless.
    connection: int = 0

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")
