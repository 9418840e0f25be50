"""Client frames read the way Pulsar 4.0.7's WebSocket handlers read them.

Pulsar deserialises frames with Jackson into `ProducerMessage` / `ConsumerCommand`, decodes
payloads and message ids with Java's `Base64.getDecoder()` and event times with
`ISO_OFFSET_DATE_TIME`. Each rule here reproduces one observable consequence of that
(scripts/pulsar/FINDINGS.md, "WebSocket behaviours, case by case"): which value becomes which
text, which frame is a `send-error`, and which one makes Pulsar drop the connection.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

_B64_CHARS = re.compile(r"[A-Za-z0-9+/]*")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:\d{2}(?::\d{2})?)"
)

#: Why Pulsar's consumer handler dies on a frame without a usable `messageId` (its NPE text).
NULL_ID = 'Cannot invoke "String.getBytes(java.nio.charset.Charset)" because "src" is null'


class FrameError(Exception):
    """A producer frame Pulsar answers with `send-error:<code>` (context only for code 7)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Drop(Exception):
    """A frame after which Pulsar drops the connection: `code` 1011 with `reason`, or None for
    a close without a close frame (Jetty cannot send Pulsar's code 3; the client sees 1006)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def java_b64decode(text: str) -> bytes:
    """`Base64.getDecoder().decode`: standard alphabet, padding optional; raises ValueError
    with Java's message."""
    body = text.rstrip("=")
    pad = len(text) - len(body)
    match = _B64_CHARS.match(body)
    assert match is not None
    if match.end() != len(body):
        bad = body[match.end()]
        if bad == "=":  # Java reports the first character after the padding
            after = len(body) - len(body[match.end() :].lstrip("="))
            raise ValueError(f"Input byte array has incorrect ending byte at {after}")
        raise ValueError(f"Illegal base64 character {ord(bad):x}")
    if len(text) == 1:
        raise ValueError("Input byte[] should at least have 2 bytes for base64 bytes")
    if pad > 2 or (pad and len(text) % 4) or len(body) % 4 == 1:
        raise ValueError("Input byte array has wrong 4-byte ending unit")
    return base64.b64decode(body + "=" * (-len(body) % 4))


def _text(value: Any, field: str) -> str | None:
    """A Jackson `String` field: scalars become their text, objects and arrays are refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    kind = "Object" if isinstance(value, dict) else "Array"
    raise FrameError(3, f"Cannot deserialize value of type `java.lang.String` from {kind} value ({field})")


def _long(value: Any, field: str) -> int:
    """A Jackson `long` field: numbers and numeric strings; null is 0."""
    if value is None:
        return 0
    if isinstance(value, bool | dict | list):
        raise FrameError(3, f"Cannot deserialize value of type `long` ({field})")
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise FrameError(
            3, f'Cannot deserialize value of type `long` from String "{value}" ({field})'
        ) from None


_TEMPLATE = "0000-00-00T00:00"


def _parse_index(text: str) -> int:
    """Roughly where Java's parser stops: the first character that cannot start a date-time."""
    for index, (char, want) in enumerate(zip(text, _TEMPLATE, strict=False)):
        if (want == "0") != char.isdigit() or (want != "0" and char.upper() != want):
            return index
    return min(len(text), len(_TEMPLATE))


def parse_event_time(text: str) -> int:
    """Milliseconds since the epoch of an `ISO_OFFSET_DATE_TIME` text; ValueError like Java's."""
    match = _ISO.fullmatch(text)
    if match is None:
        raise ValueError(f"Text '{text}' could not be parsed at index {_parse_index(text)}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        zone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        parts = [int(p) for p in offset[1:].split(":")]
        zone = timezone(
            sign * timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2] if len(parts) > 2 else 0)
        )
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=zone
        )
    except ValueError:
        raise ValueError(f"Text '{text}' could not be parsed: invalid date or time") from None
    millis = int((fraction or "0").ljust(9, "0")[:3])
    return int(moment.timestamp()) * 1000 + millis


@dataclass(slots=True)
class Publish:
    context: str | None
    raw: bytes
    properties: dict[str, str]
    key: str | None
    event_ms: int
    deliver_at_ms: int


def parse_publish(data: str | bytes, now_ms: int) -> Publish:
    """One producer frame; raises FrameError (with `.context` in its args) or Drop."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise FrameError(3, f"Unrecognized token: {str(error)[:120]}") from None
    if frame is None:
        raise FrameError(7, 'Cannot read field "context" because "sendRequest" is null')
    if not isinstance(frame, dict):
        raise FrameError(
            3, "Cannot deserialize value of type `ProducerMessage` from a JSON value that is not an object"
        )
    context = _text(frame.get("context"), "context")
    key = _text(frame.get("key"), "key")
    event_time = _text(frame.get("eventTime"), "eventTime")
    payload = _text(frame.get("payload"), "payload")
    deliver_at = _long(frame.get("deliverAt"), "deliverAt")
    deliver_after = _long(frame.get("deliverAfterMs"), "deliverAfterMs")
    for field in ("sequenceId", "schemaVersion"):
        _long(frame.get(field), field)
    raw_props = frame.get("properties")
    properties: dict[str, str | None] = {}
    if raw_props is not None:
        if not isinstance(raw_props, dict):
            raise FrameError(3, "Cannot deserialize value of type `java.util.LinkedHashMap` (properties)")
        for name, value in raw_props.items():
            properties[name] = _text(value, f"properties.{name}")
    clusters = frame.get("replicationClusters")
    if clusters is not None and not isinstance(clusters, list):
        raise FrameError(3, "Cannot deserialize value of type `java.util.ArrayList` (replicationClusters)")
    try:
        if payload is None:
            raise FrameError(
                7, 'Cannot invoke "String.getBytes(java.nio.charset.Charset)" because "src" is null'
            )
        try:
            raw = java_b64decode(payload)
        except ValueError as error:
            raise FrameError(7, f"Invalid Base64 message-payload error={error}") from None
        for name, value in properties.items():
            if value is None:  # Pulsar: an NPE outside the handler's try, the socket dies
                raise Drop(1011, f"Need Non-Null value for key: {name}")
        event_ms = 0
        if event_time is not None:
            try:
                event_ms = parse_event_time(event_time)
            except ValueError as error:
                raise FrameError(7, str(error)) from None
    except FrameError as error:
        error.args = (str(error), context)
        raise
    deliver_at_ms = deliver_at if deliver_at > 0 else 0
    if deliver_after > 0:
        deliver_at_ms = now_ms + deliver_after
    return Publish(
        context, raw, {k: v for k, v in properties.items() if v is not None}, key, event_ms, deliver_at_ms
    )


@dataclass(slots=True)
class Command:
    type: str | None
    message_id: str | None
    permits: int | None


def parse_command(data: str | bytes) -> Command:
    """A consumer or reader frame as `ConsumerCommand`; raises Drop(None) where Jackson fails."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Drop(None) from None
    if frame is None:
        return Command(None, None, None)
    if not isinstance(frame, dict):
        raise Drop(None)
    try:
        type_ = _text(frame.get("type"), "type")
        message_id = _text(frame.get("messageId"), "messageId")
    except FrameError:
        raise Drop(None) from None
    raw_permits = frame.get("permitMessages")
    permits: int | None = None
    if raw_permits is not None:
        try:
            permits = _long(raw_permits, "permitMessages")
        except FrameError:
            raise Drop(None) from None
    return Command(type_, message_id, permits)


def decode_command_id(text: str | None) -> bytes:
    """The bytes of an ack's `messageId`, or Drop as Pulsar's consumer handler dies."""
    if text is None:
        raise Drop(1011, NULL_ID)
    try:
        return java_b64decode(text)
    except ValueError as error:
        raise Drop(1011, str(error)) from None
