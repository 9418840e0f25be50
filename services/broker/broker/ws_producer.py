"""The producer endpoint: `/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}`."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from broker.handshake import finish, int_param, new_socket, refuse, serve
from broker.messages import error_frame
from broker.outbox import Outbox
from broker.sessions import ProducerSession
from broker.state import BrokerState
from broker.topics import Topic


async def open_producer(request: web.Request, state: BrokerState, name: str) -> web.StreamResponse:
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
    producer = ProducerSession(
        producer_name, outbox, state.settings.broker_max_pending_per_producer, request.remote or ""
    )
    producer.name = producer_name or f"standalone-{producer.id}"
    topic.producers[producer.id] = producer
    try:
        if not await serve(request, state, ws, "producer"):
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
        await finish(state, ws, outbox, "producer")
    return ws


def _publish(state: BrokerState, topic: Topic, producer: ProducerSession, data: str | bytes) -> None:
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
