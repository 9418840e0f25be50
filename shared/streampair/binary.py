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

The C++ client reconnects by itself and says nothing; each channel (binary_channels.py) polls
`is_connected()`, reports changes, and after a while disconnected declares itself lost
(transport.py says why). Batching is off: one message, one entry, one id, one ack, as over
WebSocket. Priority levels are not exposed by the Python binding: asking for one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_aio  # type: ignore[import-untyped]

from streampair.binary_channels import BinaryProducer, BinarySubscriber
from streampair.binary_native import (
    SharedClient,
    error_for_exception,
    parse_message_id,
    release,
    shared_client,
)
from streampair.connection import Connector
from streampair.errors import (
    BrokerUnavailable,
    CredentialUnavailable,
    InvalidRequest,
    StreamError,
    Unauthorized,
)
from streampair.transport import (
    ConsumerOptions,
    ProducerEvents,
    ProducerOptions,
    ReaderOptions,
    SubscriberEvents,
)

_TYPES = {
    "Exclusive": pulsar.ConsumerType.Exclusive,
    "Shared": pulsar.ConsumerType.Shared,
    "Failover": pulsar.ConsumerType.Failover,
    "Key_Shared": pulsar.ConsumerType.KeyShared,
}


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
        self, data: bytes, context: str, properties: Mapping[str, str] | None, key: str | None
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
            try:
                self.connector.auth_token()  # CredentialUnavailable now, as over WebSocket
            except CredentialUnavailable as unreadable:
                self.connector.count_attempt(role, where, unreadable)
                raise
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
