"""The consumer endpoint: `/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}`."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from streampair.protocol import MAX_RECEIVER_QUEUE, SUBSCRIPTION_TYPES

from broker.handshake import NAME, BadParam, bool_param, finish, int_param, log, new_socket, refuse, serve
from broker.messages import CLOCK, END_OF_TOPIC_FALSE, decode_id
from broker.outbox import Outbox
from broker.sessions import ConsumerSession
from broker.state import BrokerState
from broker.topics import Topic


async def open_consumer(
    request: web.Request, state: BrokerState, name: str, sub_name: str
) -> web.StreamResponse:
    if not sub_name:
        return refuse(state, "consumer", 400, "Failed to create consumer: Subscription name can not be empty")
    if not NAME.fullmatch(sub_name):
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
    consumer = ConsumerSession(
        name=query.get("consumerName", ""),
        outbox=outbox,
        address=request.remote or "",
        connected_ms=CLOCK.now_ms(),
        **consumer_args,
    )
    consumer.name = consumer.name or f"consumer-{consumer.id}"
    sub.add(consumer, type_)  # reserved before the first await, so a racing second consumer sees it
    try:
        if not await serve(request, state, ws, "consumer"):
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
        await finish(state, ws, outbox, "consumer")
    return ws


def _consumer_frame(
    state: BrokerState, topic: Topic, sub_name: str, consumer: ConsumerSession, data: str | bytes
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
        consumer.outbox.push(END_OF_TOPIC_FALSE)
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
