"""The WebSocket transport: the Pulsar / Macrometa WebSocket API (`ws://`, `wss://`, `http(s)://`).

One channel is one WebSocket (opened by `Connector.open`: credentials, TLS, the refusal's typed
error). The producer channel writes the facade's frames and hands the broker's answers back
by their `context`; the subscriber channel parses deliveries into a queue. A channel is lost
when its socket closes, for whatever reason; the facade then opens another (see transport.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from streampair import metrics, protocol
from streampair.connection import Connector, close_quietly, is_too_large, note_error_frame
from streampair.errors import ConnectionLost, SendError
from streampair.logs import get_logger
from streampair.message import Message
from streampair.naming import EndpointKind
from streampair.transport import (
    ChannelLoss,
    ConsumerOptions,
    ProducerEvents,
    ProducerOptions,
    ReaderOptions,
    SubscriberEvents,
)

log = get_logger("streampair.websocket")

_SEND_ERRORS = (ConnectionError, aiohttp.ClientError, RuntimeError)


class WebSocketTransport:
    name = "websocket"

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    @property
    def max_message_bytes(self) -> int | None:
        return self.connector.config.max_frame_bytes

    def encode(
        self, data: bytes, context: str, properties: Mapping[str, str] | None, key: str | None
    ) -> tuple[Any, int]:
        frame = protocol.send_frame(data, context, properties, key)
        return frame, len(frame)  # the frame is ASCII: characters are bytes

    async def open_producer(
        self, options: ProducerOptions, events: ProducerEvents, generation: int
    ) -> WebSocketProducer:
        params = {"producerName": options.name} if options.name else {}
        ws = await self.connector.open("producer", params=params)
        return WebSocketProducer(ws, events, generation)

    async def open_consumer(
        self, options: ConsumerOptions, events: SubscriberEvents, generation: int
    ) -> WebSocketSubscriber:
        params = {
            "subscriptionType": options.subscription_type,
            "receiverQueueSize": str(options.receiver_queue_size),
        }
        if options.consumer_name:
            params["consumerName"] = options.consumer_name
        if options.priority_level is not None:
            params["priorityLevel"] = str(options.priority_level)
        if options.ack_timeout_ms is not None:
            params["ackTimeoutMillis"] = str(options.ack_timeout_ms)
        if options.negative_ack_redelivery_delay_ms is not None:
            params["negativeAckRedeliveryDelay"] = str(options.negative_ack_redelivery_delay_ms)
        ws = await self.connector.open("consumer", options.subscription, params)
        return WebSocketSubscriber("consumer", ws, events, generation)

    async def open_reader(
        self, options: ReaderOptions, events: SubscriberEvents, generation: int
    ) -> WebSocketSubscriber:
        params = {"messageId": options.start, "receiverQueueSize": str(options.receiver_queue_size)}
        if options.reader_name:
            params["readerName"] = options.reader_name
        ws = await self.connector.open("reader", None, params)
        return WebSocketSubscriber("reader", ws, events, generation)

    async def close(self) -> None:
        """Nothing of its own: the sockets belong to their channels, the session to the Connector."""


class WebSocketProducer:
    """One producer WebSocket: writes frames, hands each answer to the facade by its context."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, events: ProducerEvents, generation: int) -> None:
        self.ws = ws
        self.events = events
        self.generation = generation
        self._reader = asyncio.create_task(self._read(), name="producer-reader")

    @property
    def connected(self) -> bool:
        return not self.ws.closed

    async def write(self, context: str, outgoing: Any) -> None:
        # On failure the message stays with the facade, which resends it on the next channel.
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.send_str(outgoing)

    async def lost(self) -> ChannelLoss:
        try:
            closed_by_us = await asyncio.shield(self._reader)
        except _SEND_ERRORS as error:
            return ChannelLoss(f"connection lost: {error}")
        too_large = self.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG and not closed_by_us
        return ChannelLoss("connection closed by the broker", too_large=too_large)

    async def _read(self) -> bool:
        """Hand the broker's answers to the facade until the socket closes; True if we closed it."""
        answered, issued, generation = self.events.answered, self.events.issued, self.generation
        parse = protocol.parse_answer
        text = aiohttp.WSMsgType.TEXT
        async for msg in self.ws:
            if msg.type != text:
                if msg.type == aiohttp.WSMsgType.ERROR:  # a frame we refuse: counted, then reconnect
                    note_error_frame("producer", msg.data)
                    return True
                continue
            try:
                answer = parse(msg.data)
            except protocol.MalformedFrame as error:
                metrics.MALFORMED_FRAMES.labels(kind=error.kind).inc()
                log.warning("malformed_frame", kind=error.kind, frame=str(msg.data)[:200])
                continue
            context = answer.context
            if context is not None:
                refused = None if answer.ok else SendError(answer.code, answer.error)
                if answered(generation, context, answer.message_id, refused):
                    continue
            if not answer.ok:
                # Pulsar answers a frame it could not parse without a context (send-error:3).
                log.warning("uncorrelated_send_error", result=answer.result, error=answer.error)
            elif issued(context):
                continue  # a late answer to a message that already timed out: not malformed
            metrics.MALFORMED_FRAMES.labels(kind="unknown_context").inc()
        return False

    async def close(self, wait_seconds: float) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await close_quietly(self.ws, wait_seconds)


class WebSocketSubscriber:
    """One consumer or reader WebSocket: deliveries parsed into a queue by a reader task."""

    def __init__(
        self,
        kind: EndpointKind,
        ws: aiohttp.ClientWebSocketResponse,
        events: SubscriberEvents,
        generation: int,
    ) -> None:
        self.kind = kind
        self.ws = ws
        self.events = events
        self.generation = generation
        self._queue: asyncio.Queue[Message | ConnectionLost] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name=f"{kind}-reader")

    @property
    def connected(self) -> bool:
        return not self.ws.closed

    async def receive(self) -> Message:
        item = await self._queue.get()
        if isinstance(item, ConnectionLost):
            self._queue.put_nowait(item)  # and to every later receive
            raise item
        return item

    def wake(self) -> None:
        self._queue.put_nowait(ConnectionLost("interrupted"))

    async def _read(self) -> None:
        ws, queue, generation = self.ws, self._queue, self.generation
        reason = "ended"
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    if frame.type == aiohttp.WSMsgType.ERROR:  # counted; the connection then closes
                        note_error_frame(self.kind, frame.data)
                        if is_too_large(frame.data):
                            self.events.too_large(generation)
                    continue
                try:
                    queue.put_nowait(protocol.parse_message(frame.data, generation))
                except protocol.MalformedFrame as error:
                    # Counted and skipped: one bad frame must not cost the connection.
                    metrics.MALFORMED_FRAMES.labels(kind=error.kind).inc()
                    log.warning("malformed_frame", kind=error.kind, endpoint=self.kind, detail=str(error))
            reason = f"closed by the broker (code {ws.close_code})"
        except (aiohttp.ClientError, ConnectionError) as error:
            reason = f"connection error: {error}"
        except asyncio.CancelledError:
            raise  # dropped on purpose: whoever cancelled knows
        except Exception as error:  # never leave the iterator waiting on a dead connection
            log.exception(f"{self.kind}_reader_failed")
            reason = f"reader failed: {type(error).__name__}"
        finally:
            if not (task := asyncio.current_task()) or not task.cancelling():
                queue.put_nowait(ConnectionLost(f"{self.kind} connection {reason}"))

    async def _send(self, frame: str) -> bool:
        if self.ws.closed:
            return False  # the broker redelivers it on the new connection
        try:
            await self.ws.send_str(frame)
        except _SEND_ERRORS:
            return False
        return True

    async def ack(self, message: Message) -> bool:
        return await self._send(protocol.ack_frame(message.id))

    async def nack(self, message: Message) -> bool:
        return await self._send(protocol.nack_frame(message.id))

    async def unsubscribe(self) -> None:
        if not self.ws.closed:
            await self.ws.send_str(protocol.UNSUBSCRIBE)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await close_quietly(self.ws)
