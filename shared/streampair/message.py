"""A delivered message, the same whichever transport delivered it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from streampair.errors import InvalidMessage

#: Opaque: echo it to the broker exactly as received. Both transports use the base64 of
#: Pulsar's MessageIdData, but the WebSocket API adds `batch_size=0`, so the same message's id
#: can differ in text between transports (each parses the other's): compare ids from one transport.
MessageId = str


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, which
# costs about 2 us per delivered message on the hot path; nothing relies on hashing a message.
@dataclass(slots=True)
class Message:
    """One delivered message."""

    id: MessageId
    data: bytes
    properties: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    publish_time: datetime | None = None
    #: How many times the broker delivered it before (0 the first time; Pulsar counts only on
    #: Shared and Key_Shared subscriptions).
    redelivery_count: int = 0
    #: Which channel (connection) delivered it: an ack through a later one is meaningless.
    connection: int = 0

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def payload_bytes(payload: bytes | str, properties: Mapping[str, str] | None, key: str | None) -> bytes:
    """The payload as bytes, after checking that every text can be sent as UTF-8.

    A lone surrogate ("\\ud800") is valid in a Python str and in JSON escapes, but not in UTF-8:
    brokers refuse such a frame, Pulsar without telling which message it was.
    """
    _check_text("key", key)
    for name, value in (properties or {}).items():
        _check_text("a property name", name)
        _check_text("property", value, name)
    if isinstance(payload, bytes):
        return payload
    try:
        return payload.encode()
    except UnicodeEncodeError as error:
        raise InvalidMessage(f"payload is not valid text: {error.reason} at position {error.start}") from None


def _check_text(what: str, value: object, name: str | None = None) -> None:
    if not isinstance(value, str) or value.isascii():  # ASCII (nearly always) is valid UTF-8
        return
    try:
        value.encode()
    except UnicodeEncodeError as error:
        what = what if name is None else f"{what} {name.encode(errors='backslashreplace').decode()!r}"
        raise InvalidMessage(f"{what} is not valid text: {error.reason} at position {error.start}") from None
