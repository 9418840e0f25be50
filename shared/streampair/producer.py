"""Producer: pipelined, correlated sends with reconnect and resend.

Each send carries a `context` the broker echoes in its answer, so many messages are in flight
at once (bounded by `max_pending`) instead of one round trip per message. Messages not yet
answered when a connection drops are resent on the next connection, in order: a message is
either answered `ok`, or fails with a typed error, never dropped silently. A resend may
duplicate a message the broker had stored; consumers detect that by (producer_id, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from functools import partial

import aiohttp

from streampair import metrics, protocol, tracing
from streampair.backoff import Backoff, retry, sleep_unless
from streampair.connection import (
    ConnectionState,
    Connector,
    StateCallback,
    close_quietly,
    note_error_frame,
)
from streampair.errors import (
    ConnectionLost,
    InvalidMessage,
    MessageTooLarge,
    SendError,
    SendTimeout,
    SendUnconfirmed,
    StreamError,
    Unauthorized,
)
from streampair.logs import get_logger
from streampair.message import MessageId

log = get_logger("streampair.producer")

#: A connection that closes sooner than this after opening is followed by a backoff wait.
STABLE_SECONDS = 1.0


class _Pending:
    """A message written (or to be written) and not yet answered; holds one slot of the window."""

    __slots__ = ("frame", "future", "sent_on", "started")

    def __init__(self, frame: str, future: asyncio.Future[MessageId], started: float) -> None:
        self.frame = frame
        self.future = future
        self.started = started
        self.sent_on = -1  # the connection generation this frame was last written to


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
        #: Frames larger than this are refused before sending (lowered if the broker closes on one).
        self.max_frame_bytes = connector.config.max_frame_bytes
        # One slot per unanswered message, released when it is answered, fails or times out.
        self._window = asyncio.Semaphore(max_pending)
        self._pending: dict[str, _Pending] = {}
        self._next_context = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
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
        data = _encoded(payload, properties, key)
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
        frame = protocol.send_frame(data, context, properties, key)
        if len(frame) > self.max_frame_bytes:  # the frame is ASCII: characters are bytes
            self._window.release()
            metrics.PUBLISH_ERRORS.labels(reason="too_large").inc()
            error = MessageTooLarge(len(frame), self.max_frame_bytes)
            if span is not None:
                span.record_exception(error)
                span.end()
            raise error
        future: asyncio.Future[MessageId] = asyncio.get_running_loop().create_future()
        if span is not None:
            future.add_done_callback(partial(tracing.end_send, span))
        pending = _Pending(frame, future, time.monotonic())
        self._pending[context] = pending
        ws = self._ws
        if ws is not None and self._connected.is_set():
            pending.sent_on = self._generation
            # On failure it stays pending: the supervisor resends it on the next connection.
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                await ws.send_str(pending.frame)
        return future

    async def close(self, drain_seconds: float | None = None) -> None:
        """Stop: wait up to `drain_seconds` (default: half the shutdown timeout) for answers in
        flight, then close the WebSocket cleanly. What is still unanswered fails: with
        `SendUnconfirmed` if it was written (it may have been published), else `ConnectionLost`."""
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
        await close_quietly(self._ws)
        self._connected.clear()
        self._state_changed()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            self._window.release()
            if p.future.done():
                continue
            if p.sent_on >= 0:
                metrics.PUBLISH_ERRORS.labels(reason="unconfirmed").inc()
                p.future.set_exception(
                    SendUnconfirmed(
                        "producer closed before the broker answered; the message may have been published"
                    )
                )
            else:
                metrics.PUBLISH_ERRORS.labels(reason="closed").inc()
                p.future.set_exception(ConnectionLost("producer closed before the message was sent"))

    # -- internals ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        params = {"producerName": self.name} if self.name else {}
        while not self._closing:
            try:
                ws = await retry(
                    lambda: self.connector.open("producer", params=params),
                    stop=self._stop,
                    backoff=self._backoff,
                    on_retry=self._retrying,
                )
            except StreamError as error:  # a refusal retrying cannot fix
                log.error("producer_refused", error=str(error))
                self.last_error = str(error)
                self.fatal = error
                self._fail_all(error, reason=type(error).__name__)
                self._state_changed()
                return
            if ws is None:
                return  # closing
            opened = time.monotonic()
            await self._run(ws)
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

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Use one connection until it is lost."""
        self._ws = ws
        self._generation += 1
        try:
            # Resend, in order, everything not yet written to this connection, including
            # sends that arrive while we resend; `connected` is set with no await after the
            # last check, so no send can fall between the two.
            while unsent := [p for p in self._pending.values() if p.sent_on != self._generation]:
                for pending in unsent:
                    pending.sent_on = self._generation
                    await ws.send_str(pending.frame)
            self._connected.set()
            self.last_error = None
            self._state_changed()
            closed_by_us = await self._read(ws)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
            self.last_error = f"connection lost: {error}"
            closed_by_us = False
        finally:
            self._connected.clear()
        if ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG and not closed_by_us:
            self._fail_too_large()
        if not self._closing:
            if self.last_error is None:
                self.last_error = "connection closed by the broker"
            self._state_changed()
            log.warning("producer_connection_lost", in_flight=len(self._pending), error=self.last_error)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Handle the broker's answers until the connection closes; True if we closed it."""
        release = self._window.release
        observe = metrics.PUBLISH_LATENCY.observe
        published = metrics.MESSAGES_PUBLISHED
        parse = protocol.parse_answer
        text = aiohttp.WSMsgType.TEXT
        async for msg in ws:
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
            pending = self._pending.pop(context, None) if context is not None else None
            if pending is None:
                if not answer.ok:
                    # Pulsar answers a frame it could not parse without a context (send-error:3).
                    log.warning("uncorrelated_send_error", result=answer.result, error=answer.error)
                elif self._issued(context):
                    continue  # a late answer to a message that already timed out: not malformed
                metrics.MALFORMED_FRAMES.labels(kind="unknown_context").inc()
                continue
            release()
            if not self._pending:
                self._drained.set()
            if pending.future.done():
                continue
            if answer.ok:
                published.inc()
                observe(time.monotonic() - pending.started)
                pending.future.set_result(answer.message_id)
            else:
                metrics.PUBLISH_ERRORS.labels(reason=f"send_error_{answer.code}"[:32]).inc()
                pending.future.set_exception(SendError(answer.code, answer.error))
        return False

    def _fail_too_large(self) -> None:
        """The broker closed the connection on a frame over its limit (1009): fail that message alone.

        The close does not say which frame it was: the largest one written on that connection
        and not answered. Anything at least that large is refused before sending from now on,
        so the rest is resent and the connection does not die again on the same frame.
        """
        written = [(ctx, p) for ctx, p in self._pending.items() if p.sent_on == self._generation]
        if not written:
            return
        context, culprit = max(written, key=lambda item: len(item[1].frame))
        self.max_frame_bytes = min(self.max_frame_bytes, len(culprit.frame) - 1)
        del self._pending[context]
        self._window.release()
        if not self._pending:
            self._drained.set()
        metrics.PUBLISH_ERRORS.labels(reason="too_large").inc()
        log.warning(
            "message_too_large", size=len(culprit.frame), limit=self.max_frame_bytes, closed_by="broker"
        )
        if not culprit.future.done():
            culprit.future.set_exception(MessageTooLarge(len(culprit.frame), self.max_frame_bytes))

    def _issued(self, context: str | None) -> bool:
        return (
            context is not None
            and context.isascii()
            and context.isdigit()
            and 0 < int(context) <= self._next_context
        )

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

    def _fail_all(self, error: StreamError, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            self._window.release()
            if not p.future.done():
                metrics.PUBLISH_ERRORS.labels(reason=reason.lower()[:32]).inc()
                p.future.set_exception(error)


def _encoded(payload: bytes | str, properties: Mapping[str, str] | None, key: str | None) -> bytes:
    """The payload as bytes, after checking that every text can be sent as UTF-8.

    A lone surrogate ("\\ud800") is valid in a Python str and in JSON escapes, but not in UTF-8:
    brokers refuse such a frame, Pulsar without telling which message it was.
    """
    _check_text("key", key)
    for name, value in (properties or {}).items():
        _check_text("a property name", name)
        _check_text("property", value, name)
    if isinstance(payload, bytes):
        return payload
    try:
        return payload.encode()
    except UnicodeEncodeError as error:
        raise InvalidMessage(f"payload is not valid text: {error.reason} at position {error.start}") from None


def _check_text(what: str, value: object, name: str | None = None) -> None:
    if not isinstance(value, str) or value.isascii():  # ASCII (nearly always) is valid UTF-8
        return
    try:
        value.encode()
    except UnicodeEncodeError as error:
        what = what if name is None else f"{what} {name.encode(errors='backslashreplace').decode()!r}"
        raise InvalidMessage(f"{what} is not valid text: {error.reason} at position {error.start}") from None
