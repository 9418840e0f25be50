"""The producer endpoint: `/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}`.

Query parameters are checked as Pulsar's `ProducerHandler.getProducerBuilder` checks them
(400 for a bad value, 500 for `encryptionKeys` without a key reader); batching, compression,
routing and hashing have no effect a WebSocket client can see on an unpartitioned topic.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web

from broker.frames import Drop, FrameError, parse_publish
from broker.handshake import (
    Refused,
    drop,
    enum_param,
    finish,
    invalid,
    java_bool,
    java_int,
    new_socket,
    serve,
    too_big,
)
from broker.messages import CLOCK, error_frame
from broker.outbox import Outbox
from broker.permissions import authorize
from broker.sessions import ProducerSession
from broker.state import BrokerState
from broker.topics import Topic

COMPRESSION_TYPES = ("NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY")
ROUTING_MODES = ("RoundRobinPartition", "SinglePartition", "CustomPartition")
HASHING_SCHEMES = ("JavaStringHash", "Murmur3_32Hash")
TERMINATED = "Topic was already terminated"


def check_params(query: web.Request) -> str:
    """The producer name (may be empty); Refused as Pulsar refuses the parameters."""
    q = query.query
    name = q.get("producerName")
    if name is not None and not name.strip():
        raise invalid("producerName cannot be blank")
    if "initialSequenceId" in q:
        java_int(q["initialSequenceId"], bits=64)
    if "hashingScheme" in q and q["hashingScheme"] not in HASHING_SCHEMES:
        raise invalid(f"No enum constant org.apache.pulsar.client.api.HashingScheme.{q['hashingScheme']}")
    if "sendTimeoutMillis" in q and java_int(q["sendTimeoutMillis"]) < 0:
        raise invalid("sendTimeout needs to be >= 0")
    enum_param(q, "messageRoutingMode", ROUTING_MODES, "SinglePartition")
    if java_bool(q, "batchingEnabled"):
        for param in ("batchingMaxMessages", "maxPendingMessages", "batchingMaxPublishDelay"):
            if param in q:
                java_int(q[param])
    enum_param(q, "compressionType", COMPRESSION_TYPES, "NONE")
    if "encryptionKeys" in q:
        raise Refused(
            500,
            "Failed to create producer/consumer: Can't add encryption key without configuring "
            "cryptoKeyReaderFactoryClassName",
        )
    return name or ""


async def open_producer(
    request: web.Request, state: BrokerState, name: str, namespace: str
) -> web.StreamResponse:
    authorize(request, [name], "produce")  # Pulsar's ProducerHandler: before its parameters
    producer_name = check_params(request)
    broker = state.broker
    if not broker.namespace_exists(*namespace.split("/", 1)):
        raise Refused(404, 'Failed to create producer/consumer: {"errorMsg":"Namespace not found"}')
    topic = broker.topic(name, create=True)
    assert topic is not None
    if topic.terminated:
        raise Refused(503, f'Failed to create producer/consumer: {{"errorMsg":"{TERMINATED}"}}')
    if producer_name and any(p.name == producer_name for p in topic.producers.values()):
        raise Refused(
            409,
            "Failed to create producer/consumer: "
            f"Producer with name '{producer_name}' is already connected to topic",
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
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if topic.deleted or await too_big(ws, state, msg.data):
                break
            try:
                _publish(state, topic, producer, msg.data)
            except Drop as dropped:
                state.broker.stats.bad_frame("fatal")
                await outbox.flush()
                await drop(ws, request, dropped.code, dropped.reason)
                break
            if not producer.room.is_set():
                await producer.room.wait()
        await outbox.flush()
    finally:
        topic.producers.pop(producer.id, None)
        await finish(state, ws, outbox, "producer")
    return ws


def _publish(state: BrokerState, topic: Topic, producer: ProducerSession, data: str | bytes) -> None:
    try:
        frame = parse_publish(data, CLOCK.now_ms())
    except FrameError as error:
        state.broker.stats.bad_frame("json" if error.code == 3 else "payload")
        context = error.args[1] if len(error.args) > 1 and error.code == 7 else None
        producer.outbox.push(error_frame(error.code, str(error.args[0]), context))
        return
    if topic.terminated:
        producer.outbox.push(
            error_frame(
                8,
                "org.apache.pulsar.client.api.PulsarClientException$TopicTerminatedException: "
                '{"errorMsg":"org.apache.pulsar.broker.service.BrokerServiceException$'
                f'TopicTerminatedException: {TERMINATED}"}}',
                frame.context,
            )
        )
        return
    state.broker.publish(
        topic,
        producer,
        frame.raw,
        frame.properties,
        frame.key,
        frame.context,
        event_ms=frame.event_ms,
        deliver_at_ms=frame.deliver_at_ms,
    )
