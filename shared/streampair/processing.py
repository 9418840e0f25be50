"""Running a handler over a consumer's messages: ack, retry, dead-letter.

A message whose handler succeeds is acknowledged. A handler that raises does not stop the
consumer: the message is tried again after a delay that doubles per attempt, and after
`max_delivery_attempts` it is published to a dead-letter stream and then acknowledged, in
that order, so it is never lost. Pulsar's own dead-letter topic only works on Shared and
Key_Shared subscriptions; this works on all four:

- Exclusive and Failover deliver in order, so the message is retried in place (the
  subscription waits for it, as it must to keep the order);
- Shared and Key_Shared are unordered: the consumer goes on with other messages and sends a
  negative acknowledgement when the delay is over, so the broker redelivers it (perhaps to
  another consumer) and counts the attempt in `redeliveryCount`.

    processor = Processor(consumer, handle, DeadLetterPolicy(max_delivery_attempts=5))
    async for message in consumer:
        await processor.process(message)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from opentelemetry.trace import Span
from prometheus_client import Counter

from streampair import metrics, tracing
from streampair.admin import StreamAdmin
from streampair.backoff import Backoff, sleep_unless
from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.errors import HandshakeError, MessageTooLarge, StreamError
from streampair.logs import get_logger
from streampair.message import Message
from streampair.producer import Producer

log = get_logger("streampair.processing")

Handler = Callable[[Message], Awaitable[None]]
#: What became of a message: acked after the handler succeeded, acked after its dead-letter
#: copy was stored, left for a later attempt (Shared), or left unacked because we are stopping.
Outcome = Literal["handled", "dead_lettered", "retry_later", "unacked"]

#: The error text kept in a dead-letter copy, at most.
MAX_ERROR_CHARS = 500

HANDLER_ERRORS = Counter(
    "streampair_handler_errors",
    "Handler attempts that raised, by exception class",
    ["error_class"],
    registry=None,
)
DEAD_LETTERED = Counter(
    "streampair_messages_dead_lettered",
    "Messages published to the dead-letter stream and acknowledged after their last failed attempt",
    registry=None,
)
PROCESSING = metrics.MetricSet(HANDLER_ERRORS, DEAD_LETTERED)


@dataclass(frozen=True)
class DeadLetterPolicy:
    """How often to try a message, how long to wait between tries, where to put it then."""

    #: Attempts before dead-lettering; 0 retries forever and never dead-letters.
    max_delivery_attempts: int = 5
    #: Default, as Pulsar names it: `{stream}-{subscription}-DLQ`, same tenant and namespace.
    stream: str | None = None
    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_delivery_attempts < 0:
            raise ValueError("max_delivery_attempts must be 0 (never dead-letter) or more")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1, 2, ...): doubling, capped."""
        return float(min(self.max_delay_seconds, self.first_delay_seconds * 2 ** min(attempt - 1, 30)))

    def gives_up_after(self, attempt: int) -> bool:
        return self.max_delivery_attempts > 0 and attempt >= self.max_delivery_attempts

    def stream_for(self, stream: str, subscription: str) -> str:
        return self.stream or f"{stream}-{subscription}-DLQ"


class Processor:
    """Runs `handler` on each message of `consumer` under a `DeadLetterPolicy`."""

    def __init__(self, consumer: Consumer, handler: Handler, policy: DeadLetterPolicy | None = None) -> None:
        self.consumer = consumer
        self.handler = handler
        self.policy = policy or DeadLetterPolicy()
        self.ordered = consumer.subscription_type in ("Exclusive", "Failover")
        config = consumer.connector.config
        self._stream, self._topic = config.stream, consumer.connector.address.full_topic
        self.dead_letter_stream = self.policy.stream_for(config.stream, consumer.subscription)
        self._secrets = [s for s in (config.api_key, config.auth_token) if s]
        self._dead_letters: Producer | None = None
        self._dead_letter_connector: Connector | None = None
        self._later: set[asyncio.Task[None]] = set()
        self.dead_lettered = 0
        self.handler_errors = 0
        PROCESSING.register()

    async def process(self, message: Message) -> Outcome:
        """Handle one message to its end (ordered types) or until it is parked for later."""
        with tracing.process_span(message, self._stream, self._topic, self.consumer.subscription) as span:
            result = await self._process(message, span)
            tracing.outcome(span, result)
            return result

    async def _process(self, message: Message, span: Span | None) -> Outcome:
        attempt = message.redelivery_count + 1
        while True:
            error = await self._attempt(message, attempt, span)
            if error is None:
                await self._ack(message)
                return "handled"
            if self.policy.gives_up_after(attempt):
                return await self._dead_letter(message, attempt, error)
            delay = self.policy.delay(attempt)
            if not self.ordered:
                self._nack_later(message, delay)
                return "retry_later"
            if await sleep_unless(self.consumer.interrupted, delay):
                return "unacked"  # stopping: the broker gives it to the next consumer
            attempt += 1

    async def _ack(self, message: Message) -> None:
        await self.consumer.ack(message)
        tracing.settle("ack", self._stream, self._topic, message)

    async def _attempt(self, message: Message, attempt: int, span: Span | None) -> Exception | None:
        try:
            await self.handler(message)
        except Exception as error:  # the handler is the caller's code: anything can come out
            tracing.failed_attempt(span, error, attempt)
            self.handler_errors += 1
            HANDLER_ERRORS.labels(error_class=type(error).__name__[:64]).inc()
            log.warning(
                "handler_failed",
                message_id=message.id,
                attempt=attempt,
                error_class=type(error).__name__,
                error=self._scrub(str(error))[:200],
            )
            return error
        return None

    def _nack_later(self, message: Message, delay: float) -> None:
        trace_context = tracing.current()  # the nack span belongs to this message's process span

        async def nack() -> None:
            if not await sleep_unless(self.consumer.interrupted, delay):
                await self.consumer.nack(message)  # False if its connection is gone: redelivered anyway
                tracing.settle("nack", self._stream, self._topic, message, trace_context)

        task = asyncio.create_task(nack(), name="nack-later")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _dead_letter(self, message: Message, attempts: int, error: Exception) -> Outcome:
        """Store a copy in the dead-letter stream, then ack the original; never the other way round."""
        properties = {
            **message.properties,
            "REAL_TOPIC": self.consumer.connector.address.full_topic,
            "ORIGIN_MESSAGE_ID": message.id,
            "DELIVERY_ATTEMPTS": str(attempts),
            "ERROR_CLASS": type(error).__name__,
            "ERROR_MESSAGE": self._scrub(str(error))[:MAX_ERROR_CHARS],
        }
        backoff = Backoff(base=0.5, cap=self.policy.max_delay_seconds)
        while True:
            try:
                producer = await self._dead_letter_producer()
                # The copy keeps the original's trace context (its traceparent property).
                copy_id = await producer.send(
                    message.data, properties, key=message.key, propagate_trace=False
                )
                break
            except MessageTooLarge:
                if properties.pop("ERROR_MESSAGE", None) is not None:
                    continue  # a message near the frame limit: try the copy without the error text
                reason = (
                    "the copy is larger than the frame limit (STREAM_MAX_FRAME_BYTES) even without the "
                    "error text; raise the broker's limit and the client's, or skip the message"
                )
            except StreamError as failure:
                reason = str(failure)
            log.error(
                "dead_letter_failed",
                message_id=message.id,
                dead_letter_stream=self.dead_letter_stream,
                error=reason,
            )
            if not self.ordered:
                self._nack_later(message, backoff.next_delay())
                return "retry_later"
            if await sleep_unless(self.consumer.interrupted, backoff.next_delay()):
                return "unacked"
        await self._ack(message)
        self.dead_lettered += 1
        DEAD_LETTERED.inc()
        log.warning(
            "dead_lettered",
            message_id=message.id,
            dead_letter_stream=self.dead_letter_stream,
            dead_letter_id=copy_id,
            attempts=attempts,
            error_class=type(error).__name__,
            error=self._scrub(str(error))[:200],
        )
        return "dead_lettered"

    async def _dead_letter_producer(self) -> Producer:
        """Opened on first use: a consumer that never dead-letters never publishes."""
        if self._dead_letters is not None:
            if self._dead_letters.fatal is not None:
                raise self._dead_letters.fatal
            return self._dead_letters
        config = replace(self.consumer.connector.config, stream=self.dead_letter_stream)
        connector = Connector(config)
        with contextlib.suppress(HandshakeError):
            # Brokers create a stream on first publish; where creation needs rights this
            # consumer lacks, the publish below is the judge.
            await StreamAdmin(connector).ensure_stream()
        producer = Producer(connector, send_timeout=config.connect_timeout_seconds * 3)
        await producer.start()
        self._dead_letter_connector, self._dead_letters = connector, producer
        log.info("dead_letter_producer_started", dead_letter_stream=self.dead_letter_stream)
        return producer

    def _scrub(self, text: str) -> str:
        """An error text without any credential the client holds."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def close(self) -> None:
        for task in list(self._later):
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        if self._dead_letters is not None:
            await self._dead_letters.close()
        if self._dead_letter_connector is not None:
            await self._dead_letter_connector.close()
