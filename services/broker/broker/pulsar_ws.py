"""The WebSocket endpoints of Pulsar's API v2: producer, consumer and reader.

Paths `/ws/v2/{role}/persistent/{tenant}/{namespace}/{topic}[/{subscription}]`, also under
`/_ws` (Macrometa GDN's prefix, same frames). A refused handshake is a plain HTTP status with
a Pulsar-like body, never a 101. Inside a connection, bad frames never close it: a producer
gets `send-error:3` (not JSON, no context) or `send-error:7` (bad base64, with context); a
consumer's garbage ack is ignored and counted. A frame over `BROKER_MAX_FRAME_BYTES` closes
the connection with 1009 (message too big), as aiohttp does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from streampair.logs import get_logger

from broker.messages import CLOCK, decode_id, error_frame
from broker.outbox import Outbox
from broker.routing import Router
from broker.state import STATE, BrokerState
from broker.subscriptions import MAX_RECEIVER_QUEUE, SUBSCRIPTION_TYPES, Consumer, Reader
from broker.topics import Producer, Topic

log = get_logger("broker.ws")

WS_PATH = (
    r"(?:/_ws)?/ws/v2/(?P<role>producer|consumer|reader)/persistent/"
    r"(?P<tenant>[^/]+)/(?P<namespace>[^/]+)/(?P<topic>[^/]+)(?:/(?P<subscription>[^/]+))?"
)
_NAME = re.compile(r"[^\s/\x00-\x1f\x7f]{1,255}")
_EOT = orjson.dumps({"endOfTopic": False})


class BadParam(ValueError):
    """A query parameter Pulsar would refuse with 400."""


def int_param(query: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31 - 1) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"Invalid {name}: not an integer") from None
    if not low <= value <= high:
        raise BadParam(f"Invalid {name}: must be between {low} and {high}")
    return value


def bool_param(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise BadParam(f"Invalid {name}: expected true or false")


def refuse(state: BrokerState, role: str, status: int, text: str) -> web.Response:
    state.broker.stats.rejected(role, status)
    # A standby retries every second: its 409s are counted in metrics, not logged each time.
    (log.debug if status == 409 else log.info)("handshake_refused", role=role, status=status, reason=text)
    return web.Response(status=status, text=text)


def topic_name(params: Mapping[str, str]) -> str | None:
    parts = (params["tenant"], params["namespace"], params["topic"])
    if not all(_NAME.fullmatch(part) for part in parts):
        return None
    return "persistent://{}/{}/{}".format(*parts)


def new_socket(state: BrokerState) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        max_msg_size=state.settings.broker_max_frame_bytes,
        autoping=True,
        heartbeat=state.settings.broker_heartbeat_seconds,
    )


async def handle(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    role = params["role"]
    name = topic_name(params)
    if name is None:
        return refuse(state, role, 400, f"Failed to create {role}: invalid topic name")
    if role != "consumer" and "subscription" in params:
        return refuse(state, role, 404, "Not Found")
    try:
        if role == "producer":
            return await _producer(request, state, name)
        if role == "consumer":
            return await _consumer(request, state, name, params.get("subscription", ""))
        return await _reader(request, state, name)
    except BadParam as error:
        return refuse(state, role, 400, f"Failed to create {role}: {error}")


async def _serve(request: web.Request, state: BrokerState, ws: web.WebSocketResponse, role: str) -> bool:
    try:
        await ws.prepare(request)
    except (ConnectionError, RuntimeError):
        return False
    state.sockets.add(ws)
    state.broker.stats.connections[role] += 1
    return True


async def _finish(state: BrokerState, ws: web.WebSocketResponse, outbox: Outbox, role: str) -> None:
    state.sockets.discard(ws)
    state.broker.stats.connections[role] -= 1
    await outbox.close()
    if not ws.closed:
        with contextlib.suppress(Exception):
            await ws.close()


# -- producer --------------------------------------------------------------------------------------


async def _producer(request: web.Request, state: BrokerState, name: str) -> web.StreamResponse:
    query = request.query
    for param in ("sendTimeoutMillis", "maxPendingMessages", "initialSequenceId", "batchingMaxMessages"):
        int_param(query, param, 0, -1, 2**63 - 1)
    producer_name = query.get("producerName", "")
    broker = state.broker
    topic = broker.topic(name, create=True)
    assert topic is not None
    if producer_name and any(p.name == producer_name for p in topic.producers.values()):
        return refuse(
            state,
            "producer",
            409,
            f"Failed to create producer: Producer with name '{producer_name}' is already connected to topic",
        )
    ws = new_socket(state)
    outbox = Outbox(ws)
    producer = Producer(
        producer_name, outbox, state.settings.broker_max_pending_per_producer, request.remote or ""
    )
    producer.name = producer_name or f"standalone-{producer.id}"
    topic.producers[producer.id] = producer
    try:
        if not await _serve(request, state, ws, "producer"):
            return ws
        outbox.start()
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if topic.deleted:
                    break
                _publish(state, topic, producer, msg.data)
                if not producer.room.is_set():
                    await producer.room.wait()
        await outbox.flush()
    finally:
        topic.producers.pop(producer.id, None)
        await _finish(state, ws, outbox, "producer")
    return ws


def _publish(state: BrokerState, topic: Topic, producer: Producer, data: str | bytes) -> None:
    stats = state.broker.stats
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        stats.bad_frame("json")
        producer.outbox.push(error_frame(3, f"Failed to deserialize from JSON: {str(error)[:120]}", None))
        return
    if not isinstance(frame, dict):
        stats.bad_frame("json")
        producer.outbox.push(error_frame(3, "Failed to deserialize from JSON: not an object", None))
        return
    context = frame.get("context")
    if context is not None and not isinstance(context, str):
        if isinstance(context, int | float) and not isinstance(context, bool):
            context = str(context)
        else:
            stats.bad_frame("json")
            producer.outbox.push(error_frame(3, "Failed to deserialize from JSON: bad context", None))
            return
    payload = frame.get("payload")
    if not isinstance(payload, str):
        stats.bad_frame("payload")
        producer.outbox.push(error_frame(7, "Invalid payload: missing or not a string", context))
        return
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        stats.bad_frame("payload")
        producer.outbox.push(error_frame(7, "Invalid payload: not valid base64", context))
        return
    properties = _properties(frame.get("properties"))
    key = frame.get("key")
    if properties is None or not (key is None or isinstance(key, str)):
        stats.bad_frame("json")
        producer.outbox.push(error_frame(3, "Failed to deserialize from JSON: bad properties or key", None))
        return
    state.broker.publish(topic, producer, payload, raw, properties, key, context)


def _properties(value: Any) -> dict[str, str] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[key] = item
        elif isinstance(item, int | float | bool):
            out[key] = str(item).lower() if isinstance(item, bool) else str(item)
        else:
            return None
    return out


# -- consumer --------------------------------------------------------------------------------------


async def _consumer(request: web.Request, state: BrokerState, name: str, sub_name: str) -> web.StreamResponse:
    if not sub_name:
        return refuse(state, "consumer", 400, "Failed to create consumer: Subscription name can not be empty")
    if not _NAME.fullmatch(sub_name):
        return refuse(state, "consumer", 400, "Failed to create consumer: invalid subscription name")
    query = request.query
    type_ = query.get("subscriptionType", "Exclusive") or "Exclusive"
    if type_ not in SUBSCRIPTION_TYPES:
        raise BadParam(f"Invalid subscriptionType {type_[:40]!r}")
    mode = query.get("subscriptionMode", "Durable") or "Durable"
    if mode not in ("Durable", "NonDurable"):
        raise BadParam(f"Invalid subscriptionMode {mode[:40]!r}")
    pull_mode = bool_param(query, "pullMode", False)
    queue_size = min(int_param(query, "receiverQueueSize", MAX_RECEIVER_QUEUE), MAX_RECEIVER_QUEUE)
    consumer_args: dict[str, Any] = {
        "queue_size": max(queue_size, 1),
        "priority": int_param(query, "priorityLevel", 0),
        "ack_timeout_ms": int_param(query, "ackTimeoutMillis", 0),
        "nack_delay_ms": int_param(query, "negativeAckRedeliveryDelay", 60_000),
        "pull_mode": pull_mode,
    }
    int_param(query, "maxRedeliverCount", 0)
    broker = state.broker
    topic = broker.topic(name, create=True)
    assert topic is not None
    existing = topic.subscriptions.get(sub_name)
    if existing is not None and (reason := existing.refusal(type_)) is not None:
        return refuse(state, "consumer", 409, f"Failed to create consumer: {reason}")
    sub = broker.subscription(topic, sub_name, type_, durable=mode == "Durable")
    ws = new_socket(state)
    outbox = Outbox(ws)
    consumer = Consumer(
        name=query.get("consumerName", ""),
        outbox=outbox,
        address=request.remote or "",
        connected_ms=CLOCK.now_ms(),
        **consumer_args,
    )
    consumer.name = consumer.name or f"consumer-{consumer.id}"
    sub.add(consumer, type_)  # reserved before the first await, so a racing second consumer sees it
    try:
        if not await _serve(request, state, ws, "consumer"):
            return ws
        outbox.start()
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if sub.deleted:
                break
            if _consumer_frame(state, topic, sub_name, consumer, msg.data) == "unsubscribe":
                await outbox.flush()
                await ws.close(code=WSCloseCode.OK, message=b"unsubscribed")
                break
    finally:
        sub.remove(consumer)
        if not sub.durable and not sub.consumers and not sub.deleted:
            broker.delete_subscription(sub)
        await _finish(state, ws, outbox, "consumer")
    return ws


def _consumer_frame(
    state: BrokerState, topic: Topic, sub_name: str, consumer: Consumer, data: str | bytes
) -> str:
    stats = state.broker.stats
    sub = topic.subscriptions.get(sub_name)
    if sub is None:
        return "gone"
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        stats.bad_frame("json")
        return "bad"
    if not isinstance(frame, dict):
        stats.bad_frame("json")
        return "bad"
    kind = frame.get("type")
    if kind == "permit":
        permits = frame.get("permitMessages")
        if isinstance(permits, int) and not isinstance(permits, bool) and 0 < permits <= 1_000_000:
            consumer.permits += permits
            state.broker.schedule_dispatch(sub)
            return "permit"
        stats.bad_frame("permit")
        return "bad"
    if kind == "isEndOfTopic":
        consumer.outbox.push(_EOT)
        return "eot"
    if kind == "unsubscribe":
        if len(sub.consumers) > 1:
            log.info("unsubscribe_refused", topic=topic.name, subscription=sub_name, reason="other consumers")
            return "bad"
        state.broker.delete_subscription(sub)
        return "unsubscribe"
    decoded = decode_id(frame.get("messageId"))
    seq = decoded[1] if decoded is not None and decoded[0] == topic.id else None
    if kind == "negativeAcknowledge":
        if seq is None or not sub.nack(seq, consumer.nack_delay_ms):
            stats.bad_frame("nack")
            return "bad"
        return "nack"
    if seq is None or not sub.ack(seq):
        stats.bad_frame("ack")
        return "bad"
    return "ack"


# -- reader ----------------------------------------------------------------------------------------


async def _reader(request: web.Request, state: BrokerState, name: str) -> web.StreamResponse:
    query = request.query
    queue_size = min(int_param(query, "receiverQueueSize", MAX_RECEIVER_QUEUE), MAX_RECEIVER_QUEUE)
    start = query.get("messageId", "latest") or "latest"
    topic = state.broker.topic(name, create=True)
    assert topic is not None
    if start == "latest":
        position = topic.last_seq + 1
    elif start == "earliest":
        position = topic.first_seq
    else:
        decoded = decode_id(start)
        if decoded is None or decoded[0] != topic.id:
            raise BadParam("Invalid messageId")
        position = decoded[1] + 1  # like Pulsar's reader: the given message itself is excluded
    ws = new_socket(state)
    outbox = Outbox(ws)
    reader = Reader(
        topic,
        position,
        name=query.get("readerName", ""),
        outbox=outbox,
        queue_size=max(queue_size, 1),
    )
    reader.name = reader.name or f"reader-{reader.id}"
    reader.address = request.remote or ""
    reader.connected_ms = CLOCK.now_ms()
    topic.readers.add(reader)
    try:
        if not await _serve(request, state, ws, "reader"):
            return ws
        outbox.start()
        state.broker.schedule_dispatch(reader)
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                frame = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                state.broker.stats.bad_frame("json")
                continue
            if isinstance(frame, dict) and frame.get("type") == "isEndOfTopic":
                outbox.push(_EOT)
            elif isinstance(frame, dict):
                reader.ack()
            else:
                state.broker.stats.bad_frame("json")
    finally:
        topic.readers.discard(reader)
        await _finish(state, ws, outbox, "reader")
    return ws


def register(router: Router) -> None:
    router.add("GET", WS_PATH, handle)
