"""The seam between the facades and the protocols: one small interface, one module per protocol.

`Producer`, `Consumer` and `Reader` (producer.py, consumer.py) own everything a user sees and
that does not depend on the wire: the window of unanswered messages, send timeouts, resending
after a reconnect, `SendUnconfirmed` at close, the reconnect policy and its backoff, `blocked`,
iteration and `interrupt`, metrics, tracing spans, logs and `on_state`. A transport owns one
protocol and nothing else:

- `websocket.py`: the Pulsar / Macrometa WebSocket API (`ws://`, `wss://`, `http(s)://` URLs),
- `binary.py`: Pulsar's binary protocol through pulsar-client (`pulsar://`, `pulsar+ssl://`).

The contract is **one attempt to open a channel, and a channel that works until it reports that it
is lost.** `open_*` makes one attempt and raises the typed errors of `streampair.errors` (the same
classes and `streampair_connection_attempts_total{result}` labels for both protocols); it never
retries: retrying, and how long to wait, is the facade's policy (a refused Exclusive subscription
becomes a standby in the consumer service, whichever the protocol).

A channel is one producer, consumer or reader on the broker:

- WebSocket: one socket. It is lost when the socket closes; everything in flight is the
  facade's to resend on the next channel.
- Binary: one pulsar-client producer/consumer/reader, which reconnects by itself, silently and
  with a backoff growing to 60 s. The channel polls its `is_connected()` (there is no callback)
  and reports every change through `events.connection_changed()`; disconnected for longer than
  `binary_channels.LOST_AFTER_SECONDS` (2 s) it declares itself lost, so the facade reopens it on its own
  backoff: a consumer that silently lost an Exclusive subscription to a standby during a network
  cut becomes a standby, and a long outage is not stretched by the 60 s backoff.

Answers to sends come back on the event loop's thread through `ProducerEvents.answered`, tagged
with the channel's `generation` (a number the facade gives each channel it opens), so that an
answer from a channel that was replaced is recognised. A channel that cannot deliver an answer
because it was closed answers `ConnectionLost`: the facade keeps that message for the next channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from streampair.errors import StreamError
from streampair.message import Message, MessageId
from streampair.protocol import SubscriptionType

if TYPE_CHECKING:
    from streampair.connection import Connector


@dataclass(frozen=True)
class ProducerOptions:
    name: str | None
    #: The facade's window; the transport may keep as many messages in flight.
    max_pending: int
    send_timeout: float


@dataclass(frozen=True)
class ConsumerOptions:
    subscription: str
    subscription_type: SubscriptionType
    consumer_name: str | None
    receiver_queue_size: int
    priority_level: int | None
    ack_timeout_ms: int | None
    negative_ack_redelivery_delay_ms: int | None


@dataclass(frozen=True)
class ReaderOptions:
    #: `earliest`, `latest` or a message id (the first message delivered is the one after it).
    start: str
    reader_name: str | None
    receiver_queue_size: int


@dataclass(frozen=True)
class ChannelLoss:
    """Why a channel ended."""

    reason: str
    #: WebSocket: the broker closed the socket (1009) on a frame over its limit, one we wrote.
    too_large: bool = False


class ProducerEvents(Protocol):
    """What a producer channel tells its facade (on the event loop's thread)."""

    def answered(
        self, generation: int, context: str, message_id: MessageId | None, error: StreamError | None
    ) -> bool:
        """One message's outcome; False when no message with that context is waiting."""
        ...

    def issued(self, context: str | None) -> bool:
        """True for a context the facade issued (a late answer is not a malformed frame)."""
        ...

    def connection_changed(self) -> None: ...


class SubscriberEvents(Protocol):
    """What a consumer or reader channel tells its facade (on the event loop's thread)."""

    def connection_changed(self) -> None: ...

    def too_large(self, generation: int) -> None:
        """A delivery over the configured limit stops this subscription (WebSocket only)."""
        ...


class ProducerChannel(Protocol):
    generation: int

    @property
    def connected(self) -> bool: ...

    async def write(self, context: str, outgoing: Any) -> None:
        """Hand one encoded message (`Transport.encode`) to the broker; its answer comes through
        `ProducerEvents.answered`. Never raises: a failed write is a lost channel."""
        ...

    async def lost(self) -> ChannelLoss:
        """Return when the channel is gone for good (never raises)."""
        ...

    async def close(self, wait_seconds: float) -> None: ...


class SubscriberChannel(Protocol):
    """A consumer's or reader's channel."""

    generation: int

    @property
    def connected(self) -> bool: ...

    async def receive(self) -> Message:
        """The next message; `ConnectionLost` once the channel is lost, closed or woken.
        A cancelled receive loses nothing: the message goes to the next receive."""
        ...

    def wake(self) -> None:
        """Make a receive in progress (or the next one) raise `ConnectionLost`."""
        ...

    async def ack(self, message: Message) -> bool: ...

    async def nack(self, message: Message) -> bool: ...

    async def unsubscribe(self) -> None: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """One protocol to one broker, for one `Connector` (its credentials, TLS and timeouts)."""

    name: str  # "websocket" or "binary": logs and /status

    @property
    def max_message_bytes(self) -> int | None:
        """The largest encoded message the facade lets through before sending (None: the
        transport checks it itself)."""
        ...

    def encode(
        self, data: bytes, context: str, properties: Mapping[str, str] | None, key: str | None
    ) -> tuple[Any, int]:
        """A message ready for `ProducerChannel.write` (kept for resends) and its size in bytes."""
        ...

    async def open_producer(
        self, options: ProducerOptions, events: ProducerEvents, generation: int
    ) -> ProducerChannel: ...

    async def open_consumer(
        self, options: ConsumerOptions, events: SubscriberEvents, generation: int
    ) -> SubscriberChannel: ...

    async def open_reader(
        self, options: ReaderOptions, events: SubscriberEvents, generation: int
    ) -> SubscriberChannel: ...

    async def close(self) -> None: ...


def transport_for(connector: Connector) -> Transport:
    """The transport for the connector's URL scheme; the binary one (and pulsar-client, a C++
    library with its threads) is imported only for `pulsar://` and `pulsar+ssl://` URLs."""
    if connector.config.binary:
        from streampair.binary import BinaryTransport

        return BinaryTransport(connector)
    from streampair.websocket import WebSocketTransport

    return WebSocketTransport(connector)
