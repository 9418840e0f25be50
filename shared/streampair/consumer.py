"""Consumer and Reader: async iteration over messages, acks, and reconnect.

A `Consumer` reconnects by itself after a retryable failure (network, broker restart), with
capped exponential backoff and full jitter. It does not retry a refusal: `SubscriptionBusy`
(another consumer holds the Exclusive subscription) is raised to the caller, who decides
whether to wait as a standby or give up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp

from streampair import metrics, protocol
from streampair.backoff import Backoff, retry, sleep_unless
from streampair.connection import (
    ConnectionState,
    Connector,
    StateCallback,
    close_quietly,
    is_too_large,
    note_error_frame,
)
from streampair.errors import ConnectionLost, StreamError
from streampair.logs import get_logger
from streampair.message import Message
from streampair.naming import EndpointKind
from streampair.protocol import MAX_RECEIVER_QUEUE, SubscriptionType

log = get_logger("streampair.consumer")

#: A connection that closes sooner than this after opening is followed by a backoff wait.
STABLE_SECONDS = 1.0


class _Subscriber:
    """What consumers and readers share: one WebSocket at a time, a queue, reconnects."""

    kind: EndpointKind = "consumer"

    def __init__(self, connector: Connector, *, backoff: Backoff | None = None) -> None:
        self.connector = connector
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._generation = 0
        self._closing = False
        #: Set by `interrupt()`: ends iteration and every wait of the consumer and its users.
        self.interrupted = asyncio.Event()
        self._backoff = backoff or Backoff(cap=connector.config.reconnect_max_seconds)
        # Between connections that die at once; reset only by one that lives (not by connecting).
        self._flapping = Backoff(base=0.5, cap=connector.config.reconnect_max_seconds)
        self.last_error: str | None = None
        #: Called after every change of the connection (no polling needed).
        self.on_state: StateCallback | None = None
        #: Why messages cannot flow although connected (a message over our frame limit), or None.
        self.blocked: str | None = None
        self._blocked_on = 0  # the connection that met it
        self._gauge = metrics.BROKER_CONNECTED.labels(endpoint=self.kind)
        self._blocked_gauge = metrics.BLOCKED.labels(endpoint=self.kind)
        metrics.CONSUMER.register()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    @property
    def state(self) -> ConnectionState:
        error = self.blocked or (None if self.connected else self.last_error)
        return ConnectionState(self.connected, error, blocked=self.blocked is not None)

    def _state_changed(self) -> None:
        self._gauge.set(1 if self.connected else 0)
        if self.on_state is not None:
            self.on_state(self.state)

    def _subscription(self) -> str | None:
        return None

    def _params(self) -> dict[str, str]:
        return {}

    async def connect(self) -> None:
        """One attempt to open the connection; raises the typed error of a refusal."""
        try:
            ws = await self.connector.open(self.kind, self._subscription(), self._params())
        except StreamError as error:
            self.last_error = str(error)
            raise
        await self._adopt(ws)

    async def connect_with_retry(self) -> None:
        """Connect, retrying retryable failures with backoff; refusals are raised."""

        async def attempt() -> bool:
            await self.connect()
            return True

        connected = await retry(
            attempt, stop=self.interrupted, backoff=self._backoff, on_retry=self._retrying
        )
        if connected is None:
            raise ConnectionLost(f"{self.kind} closed while reconnecting")

    def _retrying(self, error: StreamError, delay: float) -> None:
        self._state_changed()
        log.warning(f"{self.kind}_connect_failed", error=str(error), retry_in=round(delay, 3))

    async def _adopt(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self._closing:  # closed while the handshake was under way: do not hold the subscription
            await close_quietly(ws)
            raise ConnectionLost(f"{self.kind} closed while connecting")
        await self._drop_connection()
        self._generation += 1
        self._queue = asyncio.Queue()
        self._ws = ws
        self.last_error = None
        self._state_changed()
        self._reader = asyncio.create_task(
            self._read(ws, self._generation, self._queue), name=f"{self.kind}-reader"
        )

    async def _read(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        generation: int,
        queue: asyncio.Queue[Message | BaseException],
    ) -> None:
        reason = "ended"
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    if frame.type == aiohttp.WSMsgType.ERROR:  # counted; the connection then closes
                        note_error_frame(self.kind, frame.data)
                        if is_too_large(frame.data):
                            self._block(generation)
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

    async def _drop_connection(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        had_connection = self._ws is not None
        await close_quietly(self._ws)
        self._ws = None
        if had_connection:
            self._state_changed()

    async def _send_frame(self, message: Message, frame: str) -> bool:
        """Send an ack-like frame for `message` on the connection that delivered it."""
        ws = self._ws
        if ws is None or ws.closed or message.connection != self._generation:
            return False  # the broker redelivers it on the new connection
        try:
            await ws.send_str(frame)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            return False
        return True

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    def _block(self, generation: int) -> None:
        """A message over our frame limit: the broker will send it again on every connection."""
        self._blocked_on = generation
        limit = self.connector.config.max_frame_bytes
        self.blocked = (
            f"a message larger than this {self.kind} accepts ({limit} bytes, STREAM_MAX_FRAME_BYTES) "
            "is next on the subscription; raise STREAM_MAX_FRAME_BYTES or skip that message"
        )
        self._blocked_gauge.set(1)
        log.error(f"{self.kind}_blocked", reason=self.blocked)

    def _unblock(self) -> None:
        self.blocked = None
        self._blocked_gauge.set(0)
        self._state_changed()

    async def _iterate(self) -> AsyncIterator[Message]:
        if self._ws is None:
            await self.connect_with_retry()
        opened = time.monotonic()
        while not self._closing:
            item = await self._queue.get()
            if isinstance(item, Message):
                metrics.MESSAGES_RECEIVED.inc()
                if self.blocked is not None and item.connection > self._blocked_on:
                    self._unblock()  # a later connection delivered: the big message is gone
                yield item
                continue
            if self._closing:
                return
            # The connection is gone: messages it delivered and we did not ack come again.
            self.last_error = str(item)
            log.warning(f"{self.kind}_connection_lost", error=str(item))
            await self._drop_connection()
            # A connection that dies at once (a frame we refuse, a broker in trouble) must not
            # become a reconnect loop: back off unless it lived a while.
            if time.monotonic() - opened < STABLE_SECONDS:
                await sleep_unless(self.interrupted, self._flapping.next_delay())
            else:
                self._flapping.reset()
            if self._closing:
                return
            await self.connect_with_retry()
            opened = time.monotonic()

    def interrupt(self) -> None:
        """End iteration after the message being handled; the connection stays open until close()."""
        self._closing = True
        self.interrupted.set()
        self._queue.put_nowait(ConnectionLost("interrupted"))

    async def close(self) -> None:
        self.interrupt()
        await self._drop_connection()


class Consumer(_Subscriber):
    """A subscription on one stream. Iterate with `async for message in consumer`."""

    kind: EndpointKind = "consumer"

    def __init__(
        self,
        connector: Connector,
        subscription: str,
        subscription_type: SubscriptionType = "Exclusive",
        *,
        consumer_name: str | None = None,
        receiver_queue_size: int = MAX_RECEIVER_QUEUE,
        priority_level: int | None = None,
        ack_timeout_ms: int | None = None,
        negative_ack_redelivery_delay_ms: int | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(connector, backoff=backoff)
        self.subscription = subscription
        self.subscription_type = subscription_type
        self.consumer_name = consumer_name
        self.receiver_queue_size = max(1, min(receiver_queue_size, MAX_RECEIVER_QUEUE))
        self.priority_level = priority_level
        self.ack_timeout_ms = ack_timeout_ms
        self.negative_ack_redelivery_delay_ms = negative_ack_redelivery_delay_ms

    def _subscription(self) -> str | None:
        return self.subscription

    def _params(self) -> dict[str, str]:
        params = {
            "subscriptionType": self.subscription_type,
            "receiverQueueSize": str(self.receiver_queue_size),
        }
        if self.consumer_name:
            params["consumerName"] = self.consumer_name
        if self.priority_level is not None:
            params["priorityLevel"] = str(self.priority_level)
        if self.ack_timeout_ms is not None:
            params["ackTimeoutMillis"] = str(self.ack_timeout_ms)
        if self.negative_ack_redelivery_delay_ms is not None:
            params["negativeAckRedeliveryDelay"] = str(self.negative_ack_redelivery_delay_ms)
        return params

    async def ack(self, message: Message) -> bool:
        """Acknowledge; False if the delivering connection is gone (the broker will redeliver)."""
        sent = await self._send_frame(message, protocol.ack_frame(message.id))
        if sent:
            metrics.MESSAGES_ACKED.inc()
        return sent

    async def nack(self, message: Message) -> bool:
        """Ask for redelivery after the subscription's negative-ack delay."""
        sent = await self._send_frame(message, protocol.nack_frame(message.id))
        if sent:
            metrics.MESSAGES_NACKED.inc()
        return sent

    async def unsubscribe(self) -> None:
        """Delete the subscription on the broker (its cursor and backlog), then close."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(protocol.UNSUBSCRIBE)
        await self.close()


class Reader(_Subscriber):
    """Reads a stream from `earliest`, `latest` or a message id, without a subscription.

    Acks from a reader only release flow-control permits; the reader acks each message when
    the caller asks for the next one.
    """

    kind: EndpointKind = "reader"

    def __init__(
        self,
        connector: Connector,
        start: str = "latest",
        *,
        reader_name: str | None = None,
        receiver_queue_size: int = MAX_RECEIVER_QUEUE,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(connector, backoff=backoff)
        self.start = start
        self.reader_name = reader_name
        self.receiver_queue_size = max(1, min(receiver_queue_size, MAX_RECEIVER_QUEUE))
        self._last_id: str | None = None

    def _params(self) -> dict[str, str]:
        # After a reconnect, resume after the last message seen rather than from the start.
        params = {
            "messageId": self._last_id or self.start,
            "receiverQueueSize": str(self.receiver_queue_size),
        }
        if self.reader_name:
            params["readerName"] = self.reader_name
        return params

    async def _iterate(self) -> AsyncIterator[Message]:
        async for message in super()._iterate():
            if self._last_id is not None and message.id == self._last_id:
                continue  # Pulsar's reader includes the start message id itself on resume
            self._last_id = message.id
            yield message
            await self._send_frame(message, protocol.ack_frame(message.id))
