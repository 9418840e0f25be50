"""The reader endpoint: `/ws/v2/reader/persistent/{tenant}/{namespace}/{topic}`.

Pulsar's `ReaderHandler` answers every failure with 500 (a bad `messageId`, a missing
namespace, a bad `receiverQueueSize`), and reads every JSON frame but `isEndOfTopic` as an
acknowledgement that frees flow-control room; a frame that is not JSON drops the connection.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web
from streampair.protocol import MAX_RECEIVER_QUEUE

from broker.frames import Drop, java_b64decode, parse_command
from broker.handshake import Refused, drop, finish, java_int, new_socket, serve, too_big
from broker.messages import CLOCK, decode_id_bytes, end_of_topic
from broker.outbox import Outbox
from broker.permissions import authorize
from broker.sessions import ReaderSession
from broker.state import BrokerState
from broker.topics import Topic


def start_position(topic: Topic, start: str) -> int:
    """The first sequence number a reader gets (Pulsar: the given message itself is excluded)."""
    if start in ("", "latest"):
        return topic.last_seq + 1
    if start == "earliest":
        return topic.first_seq
    try:
        decoded = decode_id_bytes(java_b64decode(start))
    except ValueError as error:
        raise Refused(500, f"Failed to create reader: {error}") from None
    if decoded is None:
        raise Refused(500, "Failed to create reader: java.io.IOException: not a message id")
    ledger, entry = decoded
    if ledger != topic.id:  # another topic's id: Pulsar seeks by (ledger, entry) order
        return topic.first_seq if ledger < topic.id else topic.last_seq + 1
    return entry + 1


async def open_reader(
    request: web.Request, state: BrokerState, name: str, namespace: str
) -> web.StreamResponse:
    query = request.query
    queue_size = MAX_RECEIVER_QUEUE
    if "receiverQueueSize" in query:  # parsed before Pulsar's try: Jetty's own 500
        queue_size = min(java_int(query["receiverQueueSize"], status=500), MAX_RECEIVER_QUEUE)
        if queue_size < 0:
            raise Refused(500, "Failed to create reader: receiverQueueSize needs to be >= 0")
    authorize(request, [name], "consume")  # Pulsar's ReaderHandler: after receiverQueueSize
    broker = state.broker
    if not broker.namespace_exists(*namespace.split("/", 1)):
        raise Refused(500, 'Failed to create reader: {"errorMsg":"Namespace not found"}')
    topic = broker.topic(name, create=True)
    assert topic is not None
    position = start_position(topic, query.get("messageId", "").strip())
    if not topic.persistent:  # it keeps nothing: a reader sees what is published from now on
        position = topic.last_seq + 1
    ws = new_socket(state)
    outbox = Outbox(ws)
    reader = ReaderSession(
        topic, position, name=query.get("readerName", ""), outbox=outbox, queue_size=max(queue_size, 1)
    )
    reader.name = reader.name or f"reader-{reader.id}"
    reader.address = request.remote or ""
    reader.connected_ms = CLOCK.now_ms()
    topic.readers.add(reader)
    try:
        if not await serve(request, state, ws, "reader"):
            return ws
        outbox.start()
        broker.schedule_dispatch(reader)
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if await too_big(ws, state, msg.data):
                break
            try:
                command = parse_command(msg.data)
            except Drop as dropped:
                broker.stats.bad_frame("fatal")
                await drop(ws, request, dropped.code, dropped.reason)
                break
            if command.type == "isEndOfTopic":
                outbox.push(end_of_topic(reader.at_end()))
            else:
                reader.ack()
    finally:
        topic.readers.discard(reader)
        await finish(state, ws, outbox, "reader")
    return ws
