"""Producer: pipelined, correlated sends with reconnect and resend, on either transport.

Each message gets a `context` the broker's answer is matched with, so many messages are in
flight at once (bounded by `max_pending`) instead of one round trip per message. Messages not
yet answered when a channel is lost are resent on the next channel, in order: a message is
either answered `ok`, or fails with a typed error, never dropped silently. A resend may
duplicate a message the broker had stored; consumers detect that by (producer_id, seq).

Everything here is the same for both protocols; the wire is the transport's (transport.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from streampair import metrics, tracing
from streampair.backoff import Backoff, retry, sleep_unless
from streampair.connection import ConnectionState, Connector, StateCallback
from streampair.errors import (
    ConnectionLost,
    MessageTooLarge,
    SendError,
    SendTimeout,
    SendUnconfirmed,
    StreamError,
    Unauthorized,
)
from streampair.logs import get_logger
from streampair.message import MessageId, payload_bytes
from streampair.transport import ProducerChannel, ProducerOptions

log = get_logger("streampair.producer")

#: A connection that closes sooner than this after opening is followed by a backoff wait.
STABLE_SECONDS = 1.0


class _Pending:
    """A message written (or to be written) and not yet answered; holds one slot of the window."""

    __slots__ = ("context", "future", "outgoing", "sent_on", "size", "started")

    def __init__(
        self, context: str, outgoing: Any, size: int, future: asyncio.Future[MessageId], started: float
    ) -> None:
        self.context = context
        self.outgoing = outgoing  # as the transport encoded it, kept for resends
        self.size = size
        self.future = future
        self.started = started
        self.sent_on = -1  # the channel generation this message was last written to


def _reason(error: StreamError) -> str:
    """The `reason` label of `streampair_publish_errors_total` for a failed message."""
    if isinstance(error, SendError):
        return f"send_error_{error.code}"[:32]
    if isinstance(error, SendTimeout):
        return "timeout"
    if isinstance(error, MessageTooLarge):
        return "too_large"
    return type(error).__name__.lower()[:32]


class Producer:
    """Publishes to one stream. Use as `async with Producer(connector) as p: await p.send(b"..")`."""

    def __init__(
        self,
        connector: Connector,
        *,
        name: str | None = None,
        max_pending: int = 1000,
        send_timeout: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.connector = connector
        self.name = name
        self.send_timeout = send_timeout
        self._transport = connector.transport
        self._options = ProducerOptions(name=name, max_pending=max_pending, send_timeout=send_timeout)
        #: Messages larger than this are refused before sending (lowered if the broker closes on
        #: one); None where the transport checks sizes itself (binary: the broker's maxMessageSize).
        self.max_frame_bytes = self._transport.max_message_bytes
        # One slot per unanswered message, released when it is answered, fails or times out.
        self._window = asyncio.Semaphore(max_pending)
        self._pending: dict[str, _Pending] = {}
        self._next_context = 0
        #: The channel messages are written to; None between channels (they wait, then are resent).
        self._channel: ProducerChannel | None = None
        self._current: ProducerChannel | None = None  # the channel in use, writable or not yet
        self._generation = 0
        self._connected = asyncio.Event()
        self._drained = asyncio.Event()  # set when the last in-flight message is answered
        self._closing = False
        self._stop = asyncio.Event()  # ends the supervisor's reconnect waits
        self._supervisor: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._backoff = backoff or Backoff(cap=connector.config.reconnect_max_seconds)
        # Between connections that die at once; reset only by one that lives (not by connecting).
        self._flapping = Backoff(base=0.5, cap=connector.config.reconnect_max_seconds)
        self.last_error: str | None = None
        self.fatal: StreamError | None = None
        #: Called after every change of the connection (no polling needed).
        self.on_state: StateCallback | None = None
        self._gauge = metrics.BROKER_CONNECTED.labels(endpoint="producer")
        metrics.PRODUCER.register()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def state(self) -> ConnectionState:
        return ConnectionState(self.connected, self.last_error, self.fatal)

    def _state_changed(self) -> None:
        self._gauge.set(1 if self._connected.is_set() else 0)
        if self.on_state is not None:
            self.on_state(self.state)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start connecting in the background; `send` waits for the connection."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="producer-supervisor")
            self._sweeper = asyncio.create_task(self._sweep_timeouts(), name="producer-timeouts")

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def send(
        self,
        payload: bytes | str,
        properties: Mapping[str, str] | None = None,
        key: str | None = None,
        *,
        propagate_trace: bool = True,
    ) -> MessageId:
        """Publish one message and return the id the broker gave it.

        Raises `SendError` if the broker refused this message, `SendTimeout` if no answer came
        within `send_timeout`, or the fatal connection error (for example `Unauthorized`).
        """
        return await (await self.send_async(payload, properties, key, propagate_trace=propagate_trace))

    async def send_async(
        self,
        payload: bytes | str,
        properties: Mapping[str, str] | None = None,
        key: str | None = None,
        *,
        propagate_trace: bool = True,
    ) -> asyncio.Future[MessageId]:
        """Write one message and return, without waiting for the broker's answer.

        Waits only for room in the window of `max_pending` unanswered messages. The returned
        future resolves to the message id, or fails as `send` would. This is how to pipeline
        from one coroutine without a task per message.

        With tracing on, a `send` span covers the wait for the answer and its context goes in
        the properties (`traceparent`); `propagate_trace=False` keeps the properties' own
        context (a dead-letter copy stays in its original trace).
        """
        if self.fatal is not None:
            raise self.fatal
        if self._closing:
            raise ConnectionLost("producer is closed")
        if properties and not all(isinstance(v, str) for v in properties.values()):
            # Pulsar closes the whole connection (1011) on a null property value.
            raise TypeError("property values must be strings")
        data = payload_bytes(payload, properties, key)
        await self._window.acquire()
        if self.fatal is not None or self._closing:  # it happened while we waited for room
            self._window.release()
            raise self.fatal or ConnectionLost("producer is closed")
        self._next_context += 1
        context = str(self._next_context)
        span = None
        if tracing.enabled:
            span, properties = tracing.start_send(
                self.connector.config.stream,
                self.connector.address.full_topic,
                properties,
                len(data),
                propagate_context=propagate_trace,
            )
        outgoing, size = self._transport.encode(data, context, properties, key)
        limit = self.max_frame_bytes
        if limit is not None and size > limit:
            self._window.release()
            metrics.PUBLISH_ERRORS.labels(reason="too_large").inc()
            error = MessageTooLarge(size, limit)
            if span is not None:
                span.record_exception(error)
                span.end()
            raise error
        future: asyncio.Future[MessageId] = asyncio.get_running_loop().create_future()
        if span is not None:
            future.add_done_callback(partial(tracing.end_send, span))
        pending = _Pending(context, outgoing, size, future, time.monotonic())
        self._pending[context] = pending
        channel = self._channel
        if channel is not None:
            pending.sent_on = channel.generation
            # If it fails it stays pending: the supervisor resends it on the next channel.
            await channel.write(context, outgoing)
        return future

    async def close(self, drain_seconds: float | None = None) -> None:
        """Stop: wait up to `drain_seconds` (default: half the shutdown timeout) for answers in
        flight, then close the channel. What is still unanswered fails: with `SendUnconfirmed`
        if it was written (it may have been published), else `ConnectionLost`."""
        if self._closing:
            return
        if drain_seconds is None:
            drain_seconds = self.connector.config.shutdown_timeout_seconds / 2
        if self._pending and self._connected.is_set() and drain_seconds > 0:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_seconds)
        self._closing = True
        self._stop.set()
        for task in (self._supervisor, self._sweeper):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._supervisor, self._sweeper) if t), return_exceptions=True)
        channel, self._current, self._channel = self._current, None, None
        if channel is not None:
            await channel.close(1.0)
        self._connected.clear()
        self._state_changed()
        self._fail_all(None)

    # -- what channels tell us (transport.ProducerEvents) ------------------------------------

    def answered(
        self, generation: int, context: str, message_id: MessageId | None, error: StreamError | None
    ) -> bool:
        if isinstance(error, ConnectionLost):
            # The channel closed before the broker answered: the message stays pending and is
            # resent on the next channel (like everything unanswered on a lost WebSocket).
            return context in self._pending
        pending = self._pending.pop(context, None)
        if pending is None:
            return False
        self._window.release()
        if not self._pending:
            self._drained.set()
        if pending.future.done():
            return True
        if error is None:
            metrics.MESSAGES_PUBLISHED.inc()
            metrics.PUBLISH_LATENCY.observe(time.monotonic() - pending.started)
            pending.future.set_result(message_id or "")
        else:
            metrics.PUBLISH_ERRORS.labels(reason=_reason(error)).inc()
            pending.future.set_exception(error)
        return True

    def issued(self, context: str | None) -> bool:
        return (
            context is not None
            and context.isascii()
            and context.isdigit()
            and 0 < int(context) <= self._next_context
        )

    def connection_changed(self) -> None:
        channel = self._channel
        up = channel is not None and channel.connected
        if up == self._connected.is_set() or self._closing:
            return
        if up:
            self._connected.set()
            self.last_error = None
        else:
            self._connected.clear()
            self.last_error = "disconnected from the broker; reconnecting"
            log.warning("producer_connection_lost", in_flight=len(self._pending), error=self.last_error)
        self._state_changed()

    # -- internals ---------------------------------------------------------------------------

    async def _open(self) -> ProducerChannel:
        self._generation += 1
        return await self._transport.open_producer(self._options, self, self._generation)

    async def _supervise(self) -> None:
        while not self._closing:
            try:
                channel = await retry(
                    self._open, stop=self._stop, backoff=self._backoff, on_retry=self._retrying
                )
            except StreamError as error:  # a refusal retrying cannot fix
                log.error("producer_refused", error=str(error))
                self.last_error = str(error)
                self.fatal = error
                self._fail_all(error)
                self._state_changed()
                return
            if channel is None:
                return  # closing
            opened = time.monotonic()
            await self._run(channel)
            # A connection that dies at once (a frame the broker refuses, a broker in trouble)
            # must not become a reconnect loop: back off unless it lived a while.
            if time.monotonic() - opened < STABLE_SECONDS:
                await sleep_unless(self._stop, self._flapping.next_delay())
            else:
                self._flapping.reset()

    def _retrying(self, error: StreamError, delay: float) -> None:
        # A refusal of our credentials is said once until it changes or we connect (it is retried
        # every 5 s until a rotated token or a grant fixes it): no log storm.
        repeated = isinstance(error, Unauthorized) and str(error) == self.last_error
        self.last_error = str(error)
        self._state_changed()
        (log.debug if repeated else log.warning)(
            "producer_connect_failed", error=str(error), retry_in=round(delay, 3)
        )

    async def _run(self, channel: ProducerChannel) -> None:
        """Use one channel until it is lost."""
        generation = channel.generation
        self._current = channel
        try:
            # Resend, in order, everything not yet written to this channel, including sends
            # that arrive while we resend; the channel becomes the one `send_async` writes to
            # with no await after the last check, so no send can fall between the two.
            while unsent := [p for p in self._pending.values() if p.sent_on != generation]:
                for pending in unsent:
                    pending.sent_on = generation
                    await channel.write(pending.context, pending.outgoing)
            self._channel = channel
            if channel.connected:
                self._connected.set()
            self.last_error = None
            self._state_changed()
            loss = await channel.lost()
        finally:
            # Closing (cancelled): close() closes the channel, after the drain it granted.
            if self._channel is channel:
                self._channel = None
            self._connected.clear()
        self._current = None
        await channel.close(1.0)
        if loss.too_large:
            self._fail_too_large(generation)
        if not self._closing:
            self.last_error = loss.reason
            self._state_changed()
            log.warning("producer_connection_lost", in_flight=len(self._pending), error=self.last_error)

    def _fail_too_large(self, generation: int) -> None:
        """The broker closed the connection on a frame over its limit (1009): fail that message alone.

        The close does not say which frame it was: the largest one written on that connection
        and not answered. Anything at least that large is refused before sending from now on,
        so the rest is resent and the connection does not die again on the same frame.
        """
        written = [p for p in self._pending.values() if p.sent_on == generation]
        if not written:
            return
        culprit = max(written, key=lambda p: p.size)
        limit = culprit.size - 1
        self.max_frame_bytes = limit if self.max_frame_bytes is None else min(self.max_frame_bytes, limit)
        del self._pending[culprit.context]
        self._window.release()
        if not self._pending:
            self._drained.set()
        metrics.PUBLISH_ERRORS.labels(reason="too_large").inc()
        log.warning("message_too_large", size=culprit.size, limit=self.max_frame_bytes, closed_by="broker")
        if not culprit.future.done():
            culprit.future.set_exception(MessageTooLarge(culprit.size, self.max_frame_bytes))

    async def _sweep_timeouts(self) -> None:
        """Fail messages older than send_timeout; one timer for all instead of one per send."""
        period = min(1.0, self.send_timeout / 4)
        while True:
            await asyncio.sleep(period)
            limit = time.monotonic() - self.send_timeout
            expired = [ctx for ctx, p in self._pending.items() if p.started < limit]
            for context in expired:
                pending = self._pending.pop(context)
                self._window.release()
                if not self._pending:
                    self._drained.set()
                if not pending.future.done():
                    metrics.PUBLISH_ERRORS.labels(reason="timeout").inc()
                    written = pending.sent_on >= 0
                    text = f"no answer from the broker within {self.send_timeout:g} s" + (
                        "; the message may have been published" if written else "; the message was not sent"
                    )
                    pending.future.set_exception(SendTimeout(text, written=written))

    def _fail_all(self, error: StreamError | None) -> None:
        """Fail everything unanswered with `error`, or (None: closing) with `SendUnconfirmed` if it
        was written (it may have been published) and `ConnectionLost` if it was not."""
        pending, self._pending = self._pending, {}
        for p in pending.values():
            self._window.release()
            if p.future.done():
                continue
            failure = error
            if failure is None and p.sent_on >= 0:
                failure = SendUnconfirmed(
                    "producer closed before the broker answered; the message may have been published"
                )
            elif failure is None:
                failure = ConnectionLost("producer closed before the message was sent")
            reason = {SendUnconfirmed: "unconfirmed", ConnectionLost: "closed"}.get(type(failure))
            metrics.PUBLISH_ERRORS.labels(reason=reason or type(failure).__name__.lower()[:32]).inc()
            p.future.set_exception(failure)
