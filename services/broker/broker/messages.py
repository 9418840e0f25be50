"""Messages as the broker keeps them, and the wire encodings of ids and frames.

A message id is what Pulsar sends: base64 of a protobuf `MessageIdData` with `ledgerId` (here
the topic's number) and `entryId` (the message's sequence number in its topic). Clients treat
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
    return base64.b64encode(prefix + _varint(seq)).decode("ascii")


def decode_id(text: object) -> tuple[int, int] | None:
    """(topic number, sequence number) of an id, or None when it is not one of ours."""
    if not isinstance(text, str) or not text or len(text) > 200:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    fields: dict[int, int] = {}
    pos = 0
    while pos < len(raw):
        tag, pos = _read_varint(raw, pos)
        if tag is None:
            return None
        if tag & 7 != 0:  # only varint fields exist in the ids we issue
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
            moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
            self._last_text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
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
    if entry.key is not None:
        frame["key"] = entry.key
    return orjson.dumps(frame)


END_OF_TOPIC_FALSE = orjson.dumps({"endOfTopic": False})


def ok_frame(message_id: str, context: str | None) -> bytes:
    if context is None:
        return orjson.dumps({"result": "ok", "messageId": message_id})
    return orjson.dumps({"result": "ok", "messageId": message_id, "context": context})


def error_frame(code: int, message: str, context: str | None) -> bytes:
    frame: dict[str, Any] = {"result": f"send-error:{code}", "errorMsg": message}
    if context is not None:
        frame["context"] = context
    return orjson.dumps(frame)
