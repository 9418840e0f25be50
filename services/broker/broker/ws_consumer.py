"""The consumer endpoint: `/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}`.

Query parameters are checked in the order and with the rules of Pulsar's
`ConsumerHandler.getConsumerConfiguration`. Frames are `ConsumerCommand`s: a frame Pulsar's
handler cannot handle ends the connection the same way (1011 with the Java exception's text,
or no close frame at all), and an `unsubscribe` leaves the socket open with nothing more to
deliver, as on Pulsar.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web
from streampair.protocol import MAX_RECEIVER_QUEUE, SUBSCRIPTION_TYPES

from broker.frames import Drop, decode_command_id, parse_command
from broker.handshake import (
    Refused,
    drop,
    enum_param,
    finish,
    int_param,
    invalid,
    java_bool,
    log,
    new_socket,
    serve,
    too_big,
)
from broker.messages import CLOCK, decode_id_bytes, end_of_topic
from broker.outbox import Outbox
from broker.sessions import ConsumerSession
from broker.state import BrokerState
from broker.subscriptions import Subscription

ACK_TIMEOUT_MIN_MS = 1000


def dead_letter_topic(full_topic: str, subscription: str, given: str | None) -> str:
    """Pulsar's default `{topic}-{subscription}-DLQ`, or `deadLetterTopic` as `TopicName.get` reads it."""
    if given is None:
        return f"{full_topic}-{subscription}-DLQ"
    if "://" in given:
        return given
    if given.count("/") == 2:
        return f"persistent://{given}"
    return f"persistent://public/default/{given}"


def consumer_session(
    request: web.Request, state: BrokerState, topic_name: str, sub_name: str
) -> tuple[ConsumerSession, str, str, bool]:
    """The session the query asks for, its subscription type and mode, Earliest or not."""
    q = request.query
    ack_timeout = int_param(q, "ackTimeoutMillis", 0, low=-(2**31))
    if ack_timeout != 0 and ack_timeout < ACK_TIMEOUT_MIN_MS:
        raise invalid("Ack timeout should be greater than 1000 ms")
    type_ = enum_param(q, "subscriptionType", SUBSCRIPTION_TYPES, "Exclusive")
    mode = enum_param(q, "subscriptionMode", ("Durable", "NonDurable"), "Durable")
    position = enum_param(q, "subscriptionInitialPosition", ("Latest", "Earliest"), "Latest")
    queue = min(
        int_param(q, "receiverQueueSize", MAX_RECEIVER_QUEUE, message="receiverQueueSize needs to be >= 0"),
        MAX_RECEIVER_QUEUE,
    )
    name = q.get("consumerName")
    if name is not None and not name.strip():
        raise invalid("consumerName cannot be blank")
    priority = int_param(q, "priorityLevel", 0, message="priorityLevel needs to be >= 0")
    nack_delay = int_param(
        q, "negativeAckRedeliveryDelay", 60_000, message="redeliveryDelay needs to be >= 0"
    )
    max_redeliver = 0
    dlq: str | None = None
    if "maxRedeliverCount" in q or "deadLetterTopic" in q:
        max_redeliver = int_param(q, "maxRedeliverCount", 0, low=-(2**31))
        if max_redeliver <= 0:
            raise invalid("maxRedeliverCount must be > 0")
        dlq = dead_letter_topic(topic_name, sub_name, q.get("deadLetterTopic"))
    session = ConsumerSession(
        name=name or "",
        outbox=Outbox(new_socket(state)),
        queue_size=max(queue, 1),  # 0 behaves as 1 outstanding message, as on Pulsar
        priority=priority,
        ack_timeout_ms=ack_timeout,
        nack_delay_ms=nack_delay,
        pull_mode=java_bool(q, "pullMode"),
        address=request.remote or "",
        connected_ms=CLOCK.now_ms(),
    )
    session.max_redeliver = max_redeliver
    session.dead_letter_topic = dlq
    return session, type_, mode, position == "Earliest"


async def open_consumer(
    request: web.Request, state: BrokerState, name: str, namespace: str, sub_name: str
) -> web.StreamResponse:
    consumer, type_, mode, earliest = consumer_session(request, state, name, sub_name)
    broker = state.broker
    if not broker.namespace_exists(*namespace.split("/", 1)):
        raise Refused(404, 'Failed to create producer/consumer: {"errorMsg":"Namespace not found"}')
    topic = broker.topic(name, create=True)
    assert topic is not None
    existing = topic.subscriptions.get(sub_name)
    if existing is not None and (reason := existing.refusal(type_)) is not None:
        raise Refused(409, f'Failed to create producer/consumer: {{"errorMsg":"{reason}"}}')
    durable = mode == "Durable" and topic.persistent  # a non-persistent topic keeps no cursor
    sub = broker.subscription(topic, sub_name, type_, durable=durable, earliest=earliest)
    ws = consumer.outbox.ws
    consumer.name = consumer.name or f"consumer-{consumer.id}"
    sub.add(consumer, type_)  # reserved before the first await, so a racing second consumer sees it
    try:
        if not await serve(request, state, ws, "consumer"):
            return ws
        consumer.outbox.start()
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if await too_big(ws, state, msg.data):
                break
            try:
                _consumer_frame(state, sub, consumer, msg.data)
            except Drop as dropped:
                state.broker.stats.bad_frame("fatal")
                sub.remove(consumer)
                await drop(ws, request, dropped.code, dropped.reason)
                break
    finally:
        sub.remove(consumer)
        if not sub.durable and not sub.consumers and not sub.deleted:
            broker.delete_subscription(sub)
        await finish(state, ws, consumer.outbox, "consumer")
    return ws


def _consumer_frame(
    state: BrokerState, sub: Subscription, consumer: ConsumerSession, data: str | bytes
) -> None:
    command = parse_command(data)
    broker = state.broker
    if command.type == "permit":
        if command.permits is None:  # Pulsar throws an IOException: Jetty drops the socket
            raise Drop(None)
        if consumer.pull_mode and not consumer.unsubscribed:
            consumer.permits += command.permits
            broker.schedule_dispatch(sub)
        return
    if command.type == "unsubscribe":
        if consumer.unsubscribed or len(sub.consumers) > 1:
            log.info("unsubscribe_refused", topic=sub.topic.name, subscription=sub.name)
            raise Drop(None)
        consumer.unsubscribed = True
        sub.remove(consumer)
        broker.delete_subscription(sub)
        return
    if command.type == "isEndOfTopic":
        consumer.outbox.push(end_of_topic(sub.at_end_of_terminated_topic()))
        return
    decoded = decode_id_bytes(decode_command_id(command.message_id))
    if decoded is None:  # base64, but not a message id: Pulsar's IOException again
        raise Drop(None)
    if not sub.topic.persistent:
        # Every id is the same there: an ack or nack frees one slot of flow control (nothing
        # is redelivered), as Pulsar's handler counts it.
        if consumer.unacked and not consumer.unsubscribed:
            sub.ack(min(consumer.unacked))
        return
    if consumer.unsubscribed or decoded[0] != sub.topic.id:
        return  # Pulsar acknowledges on a closed consumer, or an id it does not know: nothing
    if command.type == "negativeAcknowledge":
        if not sub.nack(decoded[1], consumer):
            broker.stats.bad_frame("nack")
        return
    if not sub.ack(decoded[1]):
        broker.stats.bad_frame("ack")
