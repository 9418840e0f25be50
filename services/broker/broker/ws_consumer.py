"""The consumer endpoints: `/ws/v2/consumer/{domain}/{tenant}/{namespace}/{topic}/{subscription}`
and the multi-topic `/ws/v3/consumer/{subscription}?topics=a,b` or `?topicsPattern=...`.

Query parameters are checked in the order and with the rules of Pulsar's
`ConsumerHandler.getConsumerConfiguration`. Frames are `ConsumerCommand`s: a frame Pulsar's
handler cannot handle ends the connection the same way (1011 with the Java exception's text,
or no close frame at all), and an `unsubscribe` leaves the socket open with nothing more to
deliver, as on Pulsar. A multi-topic consumer is one session per topic sharing the socket
and its flow control; an ack goes to the topic its message id names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

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
from broker.permissions import authorize
from broker.sessions import ConsumerSession
from broker.state import BrokerState
from broker.subscriptions import Subscription

if TYPE_CHECKING:
    from broker.broker import Broker

ACK_TIMEOUT_MIN_MS = 1000


def dead_letter_topic(full_topic: str, subscription: str, given: str | None) -> str:
    """Pulsar's default `{topic}-{subscription}-DLQ`, or `deadLetterTopic` as `TopicName.get` reads it."""
    return f"{full_topic}-{subscription}-DLQ" if given is None else topic_name(given)


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


def topic_name(name: str) -> str:
    """Pulsar's `TopicName.get`: a short name is in `public/default`, `t/ns/x` is persistent."""
    if "://" in name:
        return name
    if name.count("/") == 2:
        return f"persistent://{name}"
    return f"persistent://public/default/{name}"


def multi_topics(request: web.Request, broker: Broker) -> list[str]:
    """The topics of a v3 request (Pulsar's `MultiTopicConsumerHandler.extractTopicName`); a
    pattern matches the topics that exist when the consumer connects."""
    q = request.query
    if ("topics" in q) == ("topicsPattern" in q):
        text = (
            "Should set topics or topicsPattern"
            if "topics" not in q
            else "Topics must be null when use topicsPattern"
        )
        raise Refused(500, f"java.lang.IllegalArgumentException: {text}")
    if "topics" in q:
        return list(dict.fromkeys(topic_name(t) for t in q["topics"].split(",")))
    pattern = topic_name(q["topicsPattern"])
    try:
        compiled = re.compile(pattern)
    except re.error:
        raise Refused(500, f"java.util.regex.PatternSyntaxException: {pattern}") from None
    tenant, namespace = [*pattern.split("://", 1)[1].split("/"), "", ""][:2]
    if not broker.namespace_exists(tenant, namespace):
        raise Refused(404, 'Failed to create producer/consumer: {"errorMsg":"Namespace not found"}')
    return sorted(name for name in broker.topics if compiled.fullmatch(name))


Attachment = tuple[Subscription, ConsumerSession]


async def open_consumer(
    request: web.Request, state: BrokerState, names: list[str], sub_name: str
) -> web.StreamResponse:
    """Attach one consumer session per topic of `names` (one, or several for v3)."""
    broker = state.broker
    leader, type_, mode, earliest = consumer_session(request, state, names[0] if names else "", sub_name)
    authorize(request, names, "consume")  # Pulsar's ConsumerHandler: after its parameters
    topics = []
    for name in names:
        tenant, namespace = name.split("://", 1)[1].split("/")[:2]
        if not broker.namespace_exists(tenant, namespace):
            raise Refused(404, 'Failed to create producer/consumer: {"errorMsg":"Namespace not found"}')
        topic = broker.topic(name, create=True)
        assert topic is not None
        existing = topic.subscriptions.get(sub_name)
        if existing is not None and (reason := existing.refusal(type_)) is not None:
            raise Refused(409, f'Failed to create producer/consumer: {{"errorMsg":"{reason}"}}')
        topics.append(topic)
    leader.name = leader.name or f"consumer-{leader.id}"
    sessions = [leader] + [leader.sibling() for _ in topics[1:]] if topics else []
    if len(sessions) > 1:
        for session in sessions:
            session.group = sessions
    attached: list[Attachment] = []
    for topic, session in zip(topics, sessions, strict=True):
        durable = mode == "Durable" and topic.persistent  # a non-persistent topic keeps no cursor
        sub = broker.subscription(topic, sub_name, type_, durable=durable, earliest=earliest)
        sub.add(session, type_)  # reserved before the first await: a racing consumer sees it
        attached.append((sub, session))
    ws = leader.outbox.ws
    try:
        if not await serve(request, state, ws, "consumer"):
            return ws
        leader.outbox.start()
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if await too_big(ws, state, msg.data):
                break
            try:
                _consumer_frame(state, attached, msg.data)
            except Drop as dropped:
                state.broker.stats.bad_frame("fatal")
                for sub, session in attached:
                    sub.remove(session)
                await drop(ws, request, dropped.code, dropped.reason)
                break
    finally:
        for sub, session in attached:
            sub.remove(session)
            if not sub.durable and not sub.consumers and not sub.deleted:
                broker.delete_subscription(sub)
        await finish(state, ws, leader.outbox, "consumer")
    return ws


def _consumer_frame(state: BrokerState, attached: list[Attachment], data: str | bytes) -> None:
    command = parse_command(data)
    broker = state.broker
    leader = attached[0][1] if attached else None
    if command.type == "permit":
        if command.permits is None:  # Pulsar throws an IOException: Jetty drops the socket
            raise Drop(None)
        if leader is not None and leader.pull_mode and not leader.unsubscribed:
            leader.permits += command.permits
            for sub, _ in attached:
                broker.schedule_dispatch(sub)
        return
    if command.type == "unsubscribe":
        if leader is None or leader.unsubscribed or any(len(sub.consumers) > 1 for sub, _ in attached):
            log.info("unsubscribe_refused", subscriptions=[sub.name for sub, _ in attached])
            raise Drop(None)
        for sub, session in attached:
            session.unsubscribed = True
            sub.remove(session)
            broker.delete_subscription(sub)
        return
    if command.type == "isEndOfTopic":
        reached = bool(attached) and all(sub.at_end_of_terminated_topic() for sub, _ in attached)
        if leader is not None:
            leader.outbox.push(end_of_topic(reached))
        return
    decoded = decode_id_bytes(decode_command_id(command.message_id))
    if decoded is None:  # base64, but not a message id: Pulsar's IOException again
        raise Drop(None)
    for sub, session in attached:
        if session.unsubscribed:
            return  # Pulsar acknowledges on a closed consumer: nothing happens
        if not sub.topic.persistent:
            # Every id is the same there: an ack or nack frees one slot of flow control
            # (nothing is redelivered), as Pulsar's handler counts it.
            if session.unacked:
                sub.ack(min(session.unacked))
                break
            continue
        if decoded[0] != sub.topic.id:
            continue
        if command.type == "negativeAcknowledge":
            if not sub.nack(decoded[1], session):
                broker.stats.bad_frame("nack")
        elif not sub.ack(decoded[1]):
            broker.stats.bad_frame("ack")
        break
    if len(attached) > 1:  # room freed on one topic is room for all of them
        for sub, _ in attached:
            broker.schedule_dispatch(sub)
