"""The reader endpoint: `/ws/v2/reader/persistent/{tenant}/{namespace}/{topic}`."""

from __future__ import annotations

import orjson
from aiohttp import WSMsgType, web
from streampair.protocol import MAX_RECEIVER_QUEUE

from broker.handshake import BadParam, finish, int_param, new_socket, serve
from broker.messages import CLOCK, END_OF_TOPIC_FALSE, decode_id
from broker.outbox import Outbox
from broker.sessions import ReaderSession
from broker.state import BrokerState


async def open_reader(request: web.Request, state: BrokerState, name: str) -> web.StreamResponse:
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
    reader = ReaderSession(
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
        if not await serve(request, state, ws, "reader"):
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
                outbox.push(END_OF_TOPIC_FALSE)
            elif isinstance(frame, dict):
                reader.ack()
            else:
                state.broker.stats.bad_frame("json")
    finally:
        topic.readers.discard(reader)
        await finish(state, ws, outbox, "reader")
    return ws
