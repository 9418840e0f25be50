"""The binary transport: Apache Pulsar's own protocol (`pulsar://`, `pulsar+ssl://`) via pulsar-client.

Producers, consumers and readers are created and closed through pulsar-client's asyncio API
(`pulsar.asyncio`, complete for all three since 3.13); the hot paths use the `_pulsar` objects
behind it (`._producer`, `._consumer`, `._reader`: hence the pin to 3.13.x), because:

- the asyncio `receive()` loses a message when the awaiting task is cancelled, and costs a
  thread hop per message. Here a receive first takes what the C++ receiver queue holds
  (`receive_async` calls back at once, on this thread, without a hop), and a message that
  arrives for a cancelled receive is kept for the next one;
- a send completes through a C++ callback that only appends to a deque; one
  `call_soon_threadsafe` per burst hands the answers to the facade.

No call here blocks the event loop (every `_pulsar` call used is asynchronous or a cheap getter)
and no exception can escape a C++ callback (that would abort the process).

The C++ client reconnects by itself and says nothing; each channel polls `is_connected()` every
`POLL_SECONDS`, reports changes, and after `LOST_AFTER_SECONDS` disconnected declares itself lost
(transport.py says why). Batching is off: one message, one entry, one id, one ack, as over
WebSocket. Priority levels are not exposed by the Python binding: asking for one is refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_aio  # type: ignore[import-untyped]

from streampair.binary_native import (
    OK,
    SharedClient,
    await_native,
    call_soon,
    error_for_exception,
    message_id_text,
    parse_message_id,
    release,
    result_name,
    shared_client,
)
from streampair.connection import Connector
from streampair.errors import (
    BrokerUnavailable,
    ConnectionLost,
    InvalidRequest,
    MessageTooLarge,
    SendError,
    SendTimeout,
    StreamError,
    Unauthorized,
)
from streampair.message import Message
from streampair.transport import (
    ChannelLoss,
    ConsumerOptions,
    ProducerEvents,
    ProducerOptions,
    ReaderOptions,
    SubscriberEvents,
)

#: How often a channel asks the C++ client whether it is connected (one cheap C++ call).
POLL_SECONDS = 0.25
#: Disconnected this long, a channel is lost: closed and reopened on the facade's backoff.
LOST_AFTER_SECONDS = 2.0

_TYPES = {
    "Exclusive": pulsar.ConsumerType.Exclusive,
    "Shared": pulsar.ConsumerType.Shared,
    "Failover": pulsar.ConsumerType.Failover,
    "Key_Shared": pulsar.ConsumerType.KeyShared,
}


class BinaryMessage(Message):
    """A message delivered over the binary protocol; `native` is pulsar-client's, for acks.

    `id` and `publish_time` are computed on first use (about 1 us each): a consumer that never
    logs them does not pay for them on every message."""

    __slots__ = ("_id", "_publish_time", "native")

    def __init__(self, native: Any, connection: int) -> None:  # no super().__init__: lazy fields
        self.native = native
        self.data = native.data()
        self.properties = native.properties()
        self.key = native.partition_key() or None
        self.redelivery_count = native.redelivery_count()
        self.connection = connection
        self._id: str | None = None
        self._publish_time: datetime | bool | None = False  # False: not computed yet

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = message_id_text(self.native.message_id())
        return self._id

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    @property
    def publish_time(self) -> datetime | None:
        if self._publish_time is False:
            millis = self.native.publish_timestamp()
            self._publish_time = datetime.fromtimestamp(millis / 1000, UTC) if millis else None
        return self._publish_time  # type: ignore[return-value]

    @publish_time.setter
    def publish_time(self, value: datetime | None) -> None:
        self._publish_time = value

    def __repr__(self) -> str:
        return f"BinaryMessage(id={self.id!r}, data={self.data[:60]!r}, properties={self.properties!r})"


class BinaryTransport:
    name = "binary"

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.config = connector.config
        self.topic = connector.address.full_topic
        self._client: SharedClient | None = None
        #: How long closing a connected consumer may wait for the broker's answer.
        self._wait = min(5.0, self.config.shutdown_timeout_seconds)

    @property
    def max_message_bytes(self) -> int | None:
        return None  # the C++ producer checks the broker's maxMessageSize itself (MessageTooBig)

    def encode(
        self, data: bytes, context: str, properties: dict[str, str] | None, key: str | None
    ) -> tuple[Any, int]:
        return (data, properties, key), len(data)

    def _native(self) -> SharedClient:
        if self._client is None:
            self._client = shared_client(self.config, self.connector.auth_token)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await release(client, self.config.shutdown_timeout_seconds)

    async def _attempt(self, role: str, create: Awaitable[Any]) -> Any:
        """One create/subscribe through the asyncio API: counted, logged, mapped to our errors.

        The creation is shielded: if our caller is cancelled (closing while connecting), what
        the broker creates afterwards is closed at once instead of holding the subscription or
        the producer name for ever."""
        where = f"{self.config.url} {self.topic}"
        if self.config.auth_token_file is not None:
            self.connector.auth_token()  # CredentialUnavailable now, as over WebSocket
        task = asyncio.ensure_future(create)
        try:
            created = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_close_orphan)
            raise
        except (pulsar_aio.PulsarException, _pulsar.PulsarException) as error:
            failure = error_for_exception(error, role)
            if isinstance(failure, Unauthorized):
                failure = self.connector.explained(failure, role)
            elif isinstance(failure, BrokerUnavailable) and "(Timeout)" in str(failure):
                failure = await self._why_timeout(role, failure)
            self.connector.count_attempt(role, where, failure)
            raise failure from None
        self.connector.count_attempt(role, where, None)
        return created

    async def _why_timeout(self, role: str, failure: BrokerUnavailable) -> StreamError:
        """A broker that refuses our token drops the connection without a word, and the client
        reports a Timeout, as for a broker that is down. Ask the admin API's topic lookup with
        the same credentials: a 401/403 there is the answer (never retried in a tight loop)."""
        base = self.connector.address.http_base
        if not base:
            return failure
        a = self.connector.address
        url = f"{base}/lookup/v2/topic/persistent/{a.tenant}/{a.namespace}/{a.topic}"
        try:
            await self.connector.request_json("GET", url)
        except Unauthorized as refused:
            return self.connector.explained(refused, role)
        except StreamError:
            pass
        return BrokerUnavailable(
            503, f"cannot reach {self.config.url} within {self.config.connect_timeout_seconds:g} s: {failure}"
        )

    async def open_producer(
        self, options: ProducerOptions, events: ProducerEvents, generation: int
    ) -> BinaryProducer:
        client = self._native()
        created = await self._attempt(
            "producer",
            client.aio.create_producer(
                self.topic,
                producer_name=options.name,
                send_timeout_millis=max(1, int(options.send_timeout * 1000)),
                # The facade's window bounds what is in flight; room for messages it timed out.
                max_pending_messages=2 * options.max_pending,
                block_if_queue_full=False,  # True would block the event loop's thread
                batching_enabled=False,  # one entry per message (True by default in pulsar.asyncio)
            ),
        )
        return BinaryProducer(created._producer, events, generation, options.send_timeout)

    async def open_consumer(
        self, options: ConsumerOptions, events: SubscriberEvents, generation: int
    ) -> BinarySubscriber:
        if options.priority_level is not None:
            raise InvalidRequest(
                400,
                "priority level is not available on the binary transport (pulsar-client does not "
                "expose it): drop PRIORITY_LEVEL or use the WebSocket API (ws:// URL)",
            )
        if options.subscription_type not in _TYPES:
            raise InvalidRequest(400, f"unknown subscription type {options.subscription_type!r}")
        nack_delay = options.negative_ack_redelivery_delay_ms
        created = await self._attempt(
            "consumer",
            self._native().aio.subscribe(
                self.topic,
                options.subscription,
                consumer_type=_TYPES[options.subscription_type],
                receiver_queue_size=options.receiver_queue_size,
                consumer_name=options.consumer_name,
                unacked_messages_timeout_ms=options.ack_timeout_ms,
                negative_ack_redelivery_delay_ms=60_000 if nack_delay is None else nack_delay,
            ),
        )
        native = created._consumer
        return BinarySubscriber("consumer", native, native.receive_async, events, generation, self._wait)

    async def open_reader(
        self, options: ReaderOptions, events: SubscriberEvents, generation: int
    ) -> BinarySubscriber:
        if options.start in ("earliest", "latest"):
            start = getattr(pulsar.MessageId, options.start)
        else:
            try:
                start = parse_message_id(options.start)
            except Exception:  # binascii.Error, or the C++ parser's own
                text = f"reader start {options.start[:80]!r} is not a message id"
                raise InvalidRequest(400, text) from None
        created = await self._attempt(
            "reader",
            self._native().aio.create_reader(
                self.topic,
                start,
                receiver_queue_size=options.receiver_queue_size,
                reader_name=options.reader_name,
            ),
        )
        native = created._reader
        return BinarySubscriber("reader", native, native.read_next_async, events, generation, self._wait)


def _close_orphan(task: asyncio.Future[Any]) -> None:
    """Close what a creation nobody waits for any more produced."""
    if task.cancelled() or task.exception() is not None:
        return
    created = task.result()
    native = getattr(created, "_producer", None) or getattr(created, "_consumer", None)
    native = native or getattr(created, "_reader", None)
    if native is not None:
        with contextlib.suppress(Exception):
            native.close_async(_ignore)


def _ignore(*_: Any) -> None:
    """A C++ callback whose outcome nobody needs."""


async def _close_native(native: Any, wait_seconds: float) -> None:
    """`close_async`, waited for at most `wait_seconds` (at once when disconnected; connected,
    it waits for the broker's answer)."""
    with contextlib.suppress(TimeoutError, StreamError):
        await await_native(native.close_async, wait_seconds)


class _Channel:
    """What every binary channel shares: the connection watch and the loss."""

    kind = "producer"

    def __init__(self, native: Any, changed: Callable[[], None], generation: int) -> None:
        self.native = native
        self.generation = generation
        self._changed = changed
        self._closed = False
        self._loss: str | None = None
        self._lost = asyncio.Event()
        self._watch = asyncio.create_task(self._watch_connection(), name="binary-channel-watch")

    @property
    def connected(self) -> bool:
        return not self._closed and self._loss is None and bool(self.native.is_connected())

    async def _watch_connection(self) -> None:
        was, since = True, 0.0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = bool(self.native.is_connected())
            if now != was:
                was = now
                since = time.monotonic()
                self._changed()
            if not now and time.monotonic() - since >= LOST_AFTER_SECONDS:
                self._loss = f"{self.kind} disconnected from the broker for {LOST_AFTER_SECONDS:g} s"
                self._lost.set()
                self._on_lost()
                return

    def _on_lost(self) -> None:
        """Subclasses: wake whoever waits on this channel."""

    async def _close(self, wait_seconds: float) -> None:
        if self._closed:
            return
        self._closed = True
        self._watch.cancel()
        await asyncio.gather(self._watch, return_exceptions=True)
        await _close_native(self.native, wait_seconds)


class BinaryProducer(_Channel):
    """One pulsar-client producer; the C++ side resends what is unanswered after its reconnects."""

    def __init__(self, native: Any, events: ProducerEvents, generation: int, send_timeout: float) -> None:
        super().__init__(native, events.connection_changed, generation)
        self.events = events
        self.send_timeout = send_timeout
        self._loop = asyncio.get_running_loop()
        self._done: collections.deque[tuple[str, int, Any, Any]] = collections.deque()
        self._wake_scheduled = False

    async def write(self, context: str, outgoing: Any) -> None:
        data, properties, key = outgoing
        builder = _pulsar.MessageBuilder()
        builder.content(data)
        if properties:
            builder.properties(properties)
        if key is not None:
            builder.partition_key(key)
        done, loop, size = self._done, self._loop, len(data)

        def sent(result: Any, message_id: Any) -> None:  # a C++ thread, or this one at once
            done.append((context, size, result, message_id))
            if not self._wake_scheduled:
                self._wake_scheduled = True
                call_soon(loop, self._settle)

        try:
            self.native.send_async(builder.build(), sent)
        except Exception:  # closed under us: the facade resends it on the next channel
            return

    def _settle(self) -> None:
        """Hand every finished send to the facade, once per burst of callbacks."""
        self._wake_scheduled = False  # first: a callback from now on schedules another pass
        done, answered, generation = self._done, self.events.answered, self.generation
        while done:
            context, size, result, message_id = done.popleft()
            if result == OK:
                answered(generation, context, message_id_text(message_id), None)
            else:
                answered(generation, context, None, self._send_error(result, size))

    def _send_error(self, result: Any, size: int) -> StreamError:
        name = result_name(result)
        if name == "Timeout":
            return SendTimeout(
                f"no answer from the broker within {self.send_timeout:g} s; "
                "the message may have been published"
            )
        if name in ("AlreadyClosed", "NotConnected", "ProducerNotInitialized"):
            return ConnectionLost("producer closed before the broker answered")
        if name == "MessageTooBig":
            return MessageTooLarge(
                size, 0, text=f"message too large: {size} bytes of payload, over the broker's maxMessageSize"
            )
        return SendError(name, "refused by the broker")

    async def lost(self) -> ChannelLoss:
        await self._lost.wait()
        return ChannelLoss(self._loss or "producer closed")

    async def close(self, wait_seconds: float) -> None:
        await self._close(wait_seconds)
        self._lost.set()


class BinarySubscriber(_Channel):
    """One pulsar-client consumer or reader."""

    def __init__(
        self,
        kind: str,
        native: Any,
        register: Callable[[Callable[..., None]], None],
        events: SubscriberEvents,
        generation: int,
        close_wait: float,
    ) -> None:
        super().__init__(native, events.connection_changed, generation)
        self.kind = kind
        self._close_wait = close_wait
        self._register = register
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._registered = False  # a receive is registered in C++ and not yet called back
        self._in_register = False
        self._hit: tuple[Any, Any] | None = None
        self._waiter: asyncio.Future[tuple[Any, Any]] | None = None
        self._leftover: collections.deque[tuple[Any, Any]] = collections.deque()
        self._error: ConnectionLost | None = None

    def _callback(self, result: Any, native: Any = None) -> None:  # a C++ thread, or register()
        if self._in_register and threading.get_ident() == self._thread:
            self._hit = (result, native)  # already queued: no thread hop, no future
        else:
            call_soon(self._loop, self._arrived, result, native)

    def _arrived(self, result: Any, native: Any) -> None:
        self._registered = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((result, native))
        else:  # its receive was cancelled or woken: the next receive gets it
            self._leftover.append((result, native))

    async def receive(self) -> Message:
        if self._leftover:
            return self._message(*self._leftover.popleft())
        if self._error is not None:
            raise self._error
        if not self._registered:
            self._registered, self._in_register, self._hit = True, True, None
            try:
                self._register(self._callback)
            except Exception as error:  # closed under us
                self._registered = False
                raise ConnectionLost(f"{self.kind} closed: {error}") from None
            finally:
                self._in_register = False
            hit, self._hit = self._hit, None
            if hit is not None:
                self._registered = False
                return self._message(*hit)
        waiter = self._waiter = self._loop.create_future()
        try:
            result, native = await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
        return self._message(result, native)

    def _message(self, result: Any, native: Any) -> Message:
        if result != OK:
            self._fail(ConnectionLost(f"{self.kind} closed ({result_name(result)})"))
            assert self._error is not None
            raise self._error
        return BinaryMessage(native, self.generation)

    def _fail(self, error: ConnectionLost) -> None:
        if self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)

    def wake(self) -> None:
        self._fail(ConnectionLost("interrupted"))

    def _on_lost(self) -> None:
        self._fail(ConnectionLost(self._loss or f"{self.kind} lost"))

    def _target(self, message: Message) -> Any:
        native = message.native if isinstance(message, BinaryMessage) else None
        return native if native is not None else parse_message_id(message.id)

    async def ack(self, message: Message) -> bool:
        """Grouped by the C++ client and sent within 100 ms; False once closed."""
        if self.kind == "reader":
            return True  # a reader has nothing to acknowledge
        if self._closed:
            return False
        try:
            self.native.acknowledge_async(self._target(message), None)
        except Exception:  # closed under us, or an id that is not one
            return False
        return True

    async def nack(self, message: Message) -> bool:
        """Redelivered after the consumer's negative-ack delay (one delay per consumer)."""
        if self.kind == "reader" or self._closed:
            return False
        try:
            self.native.negative_acknowledge(self._target(message))  # does not block in C++
        except Exception:
            return False
        return True

    async def unsubscribe(self) -> None:
        if self.kind == "consumer" and not self._closed:
            with contextlib.suppress(TimeoutError, StreamError):
                await await_native(self.native.unsubscribe_async, 10.0)

    async def close(self) -> None:
        self._fail(ConnectionLost(f"{self.kind} closed"))
        await self._close(self._close_wait)
