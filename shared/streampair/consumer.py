"""Consumer and Reader: async iteration over messages, acks, and reconnect, on either transport.

A `Consumer` reconnects by itself after a retryable failure (network, broker restart), with
capped exponential backoff and full jitter. It does not retry a refusal: `SubscriptionBusy`
(another consumer holds the Exclusive subscription) is raised to the caller, who decides
whether to wait as a standby or give up. The wire is the transport's (transport.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from streampair import metrics
from streampair.backoff import Backoff, retry, sleep_unless
from streampair.connection import ConnectionState, Connector, StateCallback
from streampair.errors import ConnectionLost, StreamError
from streampair.logs import get_logger
from streampair.message import Message
from streampair.naming import EndpointKind
from streampair.protocol import MAX_RECEIVER_QUEUE, SubscriptionType
from streampair.transport import ConsumerOptions, ReaderOptions, SubscriberChannel

log = get_logger("streampair.consumer")

#: A connection that closes sooner than this after opening is followed by a backoff wait.
STABLE_SECONDS = 1.0


class _Subscriber:
    """What consumers and readers share: one channel at a time, reconnects, iteration."""

    kind: EndpointKind = "consumer"

    def __init__(self, connector: Connector, *, backoff: Backoff | None = None) -> None:
        self.connector = connector
        self._transport = connector.transport
        self._channel: SubscriberChannel | None = None
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
        self._was_connected = False
        self._gauge = metrics.BROKER_CONNECTED.labels(endpoint=self.kind)
        self._blocked_gauge = metrics.BLOCKED.labels(endpoint=self.kind)
        metrics.CONSUMER.register()

    @property
    def connected(self) -> bool:
        return self._channel is not None and self._channel.connected

    @property
    def attached(self) -> bool:
        """A channel is open (it may be reconnecting by itself: binary transport)."""
        return self._channel is not None

    @property
    def state(self) -> ConnectionState:
        error = self.blocked or (None if self.connected else self.last_error)
        return ConnectionState(self.connected, error, blocked=self.blocked is not None)

    def _state_changed(self) -> None:
        self._was_connected = self.connected
        self._gauge.set(1 if self._was_connected else 0)
        if self.on_state is not None:
            self.on_state(self.state)

    async def _open(self, generation: int) -> SubscriberChannel:
        raise NotImplementedError

    async def connect(self) -> None:
        """One attempt to open the channel; raises the typed error of a refusal."""
        self._generation += 1
        try:
            channel = await self._open(self._generation)
        except StreamError as error:
            self.last_error = str(error)
            raise
        await self._adopt(channel)

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

    async def _adopt(self, channel: SubscriberChannel) -> None:
        if self._closing:  # closed while the attempt was under way: do not hold the subscription
            await channel.close()
            raise ConnectionLost(f"{self.kind} closed while connecting")
        await self._drop_connection()
        self._channel = channel
        self.last_error = None
        self._state_changed()

    async def _drop_connection(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
            self._state_changed()

    # -- what channels tell us (transport.SubscriberEvents) ----------------------------------

    def connection_changed(self) -> None:
        """A channel reconnecting by itself (binary) went down or came back."""
        if self.connected != self._was_connected and not self._closing:
            if not self.connected:
                self.last_error = f"{self.kind} disconnected from the broker; reconnecting"
                log.warning(f"{self.kind}_connection_lost", error=self.last_error)
            self._state_changed()

    def too_large(self, generation: int) -> None:
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

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        if self._channel is None:
            await self.connect_with_retry()
        opened = time.monotonic()
        received = metrics.MESSAGES_RECEIVED.inc
        while not self._closing:
            channel = self._channel
            if channel is None:  # dropped while the caller handled the last message
                await self.connect_with_retry()
                opened = time.monotonic()
                continue
            try:
                message = await channel.receive()
            except ConnectionLost as lost:
                if self._closing:
                    return
                # The channel is gone: messages it delivered and we did not ack come again.
                self.last_error = str(lost)
                log.warning(f"{self.kind}_connection_lost", error=str(lost))
                await self._drop_connection()
                # A connection that dies at once (a frame we refuse, a broker in trouble) must
                # not become a reconnect loop: back off unless it lived a while.
                if time.monotonic() - opened < STABLE_SECONDS:
                    await sleep_unless(self.interrupted, self._flapping.next_delay())
                else:
                    self._flapping.reset()
                if self._closing:
                    return
                await self.connect_with_retry()
                opened = time.monotonic()
                continue
            received()
            if self.blocked is not None and message.connection > self._blocked_on:
                self._unblock()  # a later connection delivered: the big message is gone
            yield message

    def interrupt(self) -> None:
        """End iteration after the message being handled; the connection stays open until close()."""
        self._closing = True
        self.interrupted.set()
        if self._channel is not None:
            self._channel.wake()

    async def close(self) -> None:
        self.interrupt()
        await self._drop_connection()

    async def _settle(self, message: Message, ack: bool) -> bool:
        """Ack or nack through the channel that delivered `message`; False if it is gone."""
        channel = self._channel
        if channel is None or message.connection != channel.generation:
            return False  # the broker redelivers it on the new channel
        return await (channel.ack(message) if ack else channel.nack(message))


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

    def options(self) -> ConsumerOptions:
        return ConsumerOptions(
            subscription=self.subscription,
            subscription_type=self.subscription_type,
            consumer_name=self.consumer_name,
            receiver_queue_size=self.receiver_queue_size,
            priority_level=self.priority_level,
            ack_timeout_ms=self.ack_timeout_ms,
            negative_ack_redelivery_delay_ms=self.negative_ack_redelivery_delay_ms,
        )

    async def _open(self, generation: int) -> SubscriberChannel:
        return await self._transport.open_consumer(self.options(), self, generation)

    async def ack(self, message: Message) -> bool:
        """Acknowledge; False if the delivering connection is gone (the broker will redeliver)."""
        channel = self._channel  # (inlined _settle: this runs once per message)
        if channel is None or message.connection != channel.generation:
            return False
        sent = await channel.ack(message)
        if sent:
            metrics.MESSAGES_ACKED.inc()
        return sent

    async def nack(self, message: Message) -> bool:
        """Ask for redelivery after the subscription's negative-ack delay."""
        sent = await self._settle(message, ack=False)
        if sent:
            metrics.MESSAGES_NACKED.inc()
        return sent

    async def unsubscribe(self) -> None:
        """Delete the subscription on the broker (its cursor and backlog), then close."""
        if self._channel is not None:
            await self._channel.unsubscribe()
        await self.close()


class Reader(_Subscriber):
    """Reads a stream from `earliest`, `latest` or a message id, without a subscription.

    Acks from a reader only release flow-control permits (WebSocket); the reader acks each
    message when the caller asks for the next one.
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

    async def _open(self, generation: int) -> SubscriberChannel:
        # After a reconnect, resume after the last message seen rather than from the start.
        options = ReaderOptions(
            start=self._last_id or self.start,
            reader_name=self.reader_name,
            receiver_queue_size=self.receiver_queue_size,
        )
        return await self._transport.open_reader(options, self, generation)

    async def _iterate(self) -> AsyncIterator[Message]:
        async for message in super()._iterate():
            if self._last_id is not None and message.id == self._last_id:
                continue  # Pulsar's reader includes the start message id itself on resume
            self._last_id = message.id
            yield message
            await self._settle(message, ack=True)
