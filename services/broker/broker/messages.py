"""Messages as the broker keeps them, and the wire encodings of ids and frames.

A message id is what Pulsar sends: base64 of a protobuf `MessageIdData` with `ledgerId` (here
the topic's number), `entryId` (the message's sequence number in its topic) and `batch_size` 0,
byte for byte as Pulsar 4.0 encodes an unbatched message. Clients treat
it as opaque; the broker can still tell an id of another topic from one of its own.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(slots=True)
class Entry:
    """One committed message. `payload` is the base64 text the producer sent, echoed as is."""

    seq: int
    payload: str
    properties: dict[str, str]
    key: str | None
    publish_ms: int
    message_id: str
    event_ms: int = 0
    #: Shared and Key_Shared subscriptions hold the message back until then (0: at once).
    deliver_at_ms: int = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def id_prefix(topic_id: int) -> bytes:
    """The constant head of every id of a topic (`ledgerId` field, then the `entryId` tag)."""
    return b"\x08" + _varint(topic_id) + b"\x10"


def encode_id(prefix: bytes, seq: int) -> str:
    return base64.b64encode(prefix + _varint(seq) + b"\x30\x00").decode("ascii")


def decode_id(text: object) -> tuple[int, int] | None:
    """(topic number, sequence number) of an id, or None when it is not one of ours."""
    if not isinstance(text, str) or not text or len(text) > 200:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decode_id_bytes(raw)


def decode_id_bytes(raw: bytes) -> tuple[int, int] | None:
    """(ledger, entry) of a serialized `MessageIdData`, or None when it is not one."""
    fields: dict[int, int] = {}
    pos = 0
    while pos < len(raw):
        tag, pos = _read_varint(raw, pos)
        if tag is None:
            return None
        if tag & 7 != 0:  # only varint fields exist in the ids we issue
            return None
        if tag >> 3 not in (1, 2, 3, 4, 6):  # ledger, entry, partition, batch index, batch size
            return None
        value, pos = _read_varint(raw, pos)
        if value is None:
            return None
        fields[tag >> 3] = value
    if 1 not in fields or 2 not in fields:
        return None
    return fields[1], fields[2]


def _read_varint(raw: bytes, pos: int) -> tuple[int | None, int]:
    result = 0
    shift = 0
    while pos < len(raw) and shift < 70:
        byte = raw[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    return None, pos


def java_iso(ms: int) -> str:
    """An instant as Java's `ISO_OFFSET_DATE_TIME` in UTC prints it (Pulsar's `DateFormatter`):
    the fraction loses its trailing zeros (`.830` is `.83`) and disappears when zero."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


class Clock:
    """Publish times in ms and their ISO-8601 text, memoised: many messages share a millisecond."""

    __slots__ = ("_last_ms", "_last_text")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_text = ""

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    def iso(self, ms: int) -> str:
        if ms != self._last_ms:
            self._last_text = java_iso(ms)
            self._last_ms = ms
        return self._last_text


CLOCK = Clock()


def delivery_frame(entry: Entry, redelivery_count: int) -> bytes:
    """A consumer/reader frame exactly as Pulsar's WebSocket API shapes it."""
    frame: dict[str, Any] = {
        "messageId": entry.message_id,
        "payload": entry.payload,
        "properties": entry.properties,
        "publishTime": CLOCK.iso(entry.publish_ms),
        "redeliveryCount": redelivery_count,
    }
    if entry.event_ms != 0:
        frame["eventTime"] = java_iso(entry.event_ms)
    if entry.key is not None:
        frame["key"] = entry.key
    return orjson.dumps(frame)


_END_OF_TOPIC = {flag: orjson.dumps({"endOfTopic": flag}) for flag in (False, True)}


def end_of_topic(reached: bool) -> bytes:
    return _END_OF_TOPIC[reached]


def ok_frame(message_id: str, context: str | None) -> bytes:
    """Pulsar's `ProducerAck`: `errorCode` and `schemaVersion` are always there (0)."""
    if context is None:
        return orjson.dumps({"result": "ok", "messageId": message_id, "errorCode": 0, "schemaVersion": 0})
    return orjson.dumps(
        {"result": "ok", "messageId": message_id, "context": context, "errorCode": 0, "schemaVersion": 0}
    )


def error_frame(code: int, message: str, context: str | None) -> bytes:
    """`send-error:<code>`; `errorCode` stays 0 on errors too, as in Pulsar 4.0.7."""
    frame: dict[str, Any] = {"result": f"send-error:{code}", "errorMsg": message}
    if context is not None:
        frame["context"] = context
    frame["errorCode"] = 0
    frame["schemaVersion"] = 0
    return orjson.dumps(frame)
