"""The wire format of the Pulsar / Macrometa WebSocket API, as the client speaks it.

Constants that client and embedded broker must agree on live here (the broker imports them),
together with the client's frames: what a producer writes, what a consumer acks, how a
delivered message is parsed. Message ids are opaque base64 strings, echoed exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args

from streampair.message import Message, MessageId

SubscriptionType = Literal["Exclusive", "Shared", "Failover", "Key_Shared"]
#: The exact spellings Pulsar accepts for `subscriptionType` (anything else is a 400).
SUBSCRIPTION_TYPES: Final[tuple[str, ...]] = get_args(SubscriptionType)

#: Pulsar caps receiverQueueSize at 1000 for WebSocket consumers and readers.
MAX_RECEIVER_QUEUE: Final = 1000

#: jsC8's extractTenantName falls back to this tenant when there is no API key.
DEFAULT_C8_TENANT: Final = "_mm"


def tenant_from_api_key(api_key: str | None) -> str:
    """The tenant encoded in a Macrometa API key: the key split on '.', less its last two parts."""
    if not api_key:
        return DEFAULT_C8_TENANT
    tenant = ".".join(api_key.split(".")[:-2])
    return tenant or DEFAULT_C8_TENANT


# -- frames ---------------------------------------------------------------------------------

_encode = json.JSONEncoder(separators=(",", ":")).encode  # one shared encoder, compact like Pulsar's
_quote = json.encoder.encode_basestring_ascii

UNSUBSCRIBE: Final = '{"type":"unsubscribe"}'


def send_frame(data: bytes, context: str, properties: Mapping[str, str] | None, key: str | None) -> str:
    """A producer's message frame. Built by hand: base64 and a decimal context need no escaping."""
    frame = '{"payload":"' + base64.b64encode(data).decode("ascii") + '","context":"' + context + '"'
    if properties:
        frame += ',"properties":' + _encode(dict(properties))
    if key is not None:
        frame += ',"key":' + _encode(key)
    return frame + "}"


def ack_frame(message_id: MessageId) -> str:
    return '{"messageId":' + _quote(message_id) + "}"


def nack_frame(message_id: MessageId) -> str:
    return '{"type":"negativeAcknowledge","messageId":' + _quote(message_id) + "}"


class MalformedFrame(ValueError):
    """A broker frame we cannot use; `kind` is the label it is counted under."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class SendAnswer:
    """The broker's answer to one producer frame."""

    context: str | None
    result: str
    message_id: MessageId
    error: str

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    @property
    def code(self) -> str:
        """`send-error:8` -> `8`."""
        return self.result.removeprefix("send-error:")


def parse_answer(raw: str | bytes) -> SendAnswer:
    try:
        answer = json.loads(raw)
        result = answer["result"]
        context = answer.get("context")
    except (ValueError, KeyError, AttributeError, TypeError):
        raise MalformedFrame("producer_answer", "answer is not a JSON object with a result") from None
    return SendAnswer(
        context=context if isinstance(context, str) else None,
        result=str(result),
        message_id=str(answer.get("messageId", "")),
        error=str(answer.get("errorMsg", "")),
    )


def parse_message(raw: str | bytes, connection: int) -> Message:
    """A consumer's or reader's delivery frame."""
    try:
        frame = json.loads(raw)
    except ValueError:
        raise MalformedFrame("not_json", "frame is not JSON") from None
    if not isinstance(frame, dict):
        raise MalformedFrame("not_object", "frame is not a JSON object")
    message_id = frame.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise MalformedFrame("missing_field", "frame has no messageId")
    try:
        data = base64.b64decode(frame.get("payload", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise MalformedFrame("bad_payload", f"payload of {message_id} is not base64") from None
    properties = frame.get("properties") or {}
    if not isinstance(properties, dict):
        raise MalformedFrame("bad_properties", "properties is not an object")
    for value in properties.values():
        if type(value) is not str:  # JSON keys are always strings; values almost always are
            properties = {str(k): str(v) for k, v in properties.items()}
            break
    publish_time = frame.get("publishTime")
    key = frame.get("key")
    redelivery = frame.get("redeliveryCount", 0)
    return Message(
        id=message_id,
        data=data,
        properties=properties,
        key=key if isinstance(key, str) else None,
        publish_time=_publish_time(publish_time) if isinstance(publish_time, str) else None,
        redelivery_count=redelivery if type(redelivery) is int and redelivery >= 0 else 0,
        connection=connection,
    )


_publish_times: dict[str, datetime | None] = {}


def _publish_time(text: str) -> datetime | None:
    """Parsed publish time, memoised: messages published in the same millisecond share it."""
    try:
        return _publish_times[text]
    except KeyError:
        pass
    try:
        value: datetime | None = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if len(_publish_times) >= 1024:
        _publish_times.clear()
    _publish_times[text] = value
    return value
