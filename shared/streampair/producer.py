"""Producer: pipelined, correlated sends with reconnect and resend.

Each send carries a `context` the broker echoes in its answer, so many messages are in flight
at once (bounded by `max_pending`) instead of one round trip per message. Messages not yet
answered when a connection drops are resent on the next connection, in order: a message is
either answered `ok`, or fails with a typed error, never dropped silently. A resend may
duplicate a message the broker had stored; consumers detect that by (producer_id, seq).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Mapping

import aiohttp

from streampair import metrics
from streampair.backoff import Backoff
from streampair.connection import Connector, close_quietly, note_error_frame
from streampair.errors import ConnectionLost, SendError, SendTimeout, StreamError
from streampair.logs import get_logger

log = get_logger("streampair.producer")

MessageId = str


#: One encoder for properties and keys (compact, like Pulsar's own clients).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


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
        # One slot per unanswered message, released when it is answered, fails or times out.
        self._window = asyncio.Semaphore(max_pending)
        self._pending: dict[str, _Pending] = {}
        self._next_context = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._generation = 0
        self._connected = asyncio.Event()
        self._drained = asyncio.Event()  # set when the last in-flight message is answered
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._backoff = backoff or Backoff(cap=connector.settings.reconnect_max_seconds)
        self.last_error: str | None = None
        self.fatal: StreamError | None = None
        #: Called after every change of `connected`, `last_error` or `fatal` (no polling needed).
        self.on_state: Callable[[], None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _state_changed(self) -> None:
        metrics.BROKER_CONNECTED.set(1 if self._connected.is_set() else 0)
        if self.on_state is not None:
            self.on_state()

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
    ) -> MessageId:
        """Publish one message and return the id the broker gave it.

        Raises `SendError` if the broker refused this message, `SendTimeout` if no answer came
        within `send_timeout`, or the fatal connection error (for example `Unauthorized`).
        """
        return await (await self.send_async(payload, properties, key))

    async def send_async(
        self,
        payload: bytes | str,
        properties: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> asyncio.Future[MessageId]:
        """Write one message and return, without waiting for the broker's answer.

        Waits only for room in the window of `max_pending` unanswered messages. The returned
        future resolves to the message id, or fails as `send` would. This is how to pipeline
        from one coroutine without a task per message.
        """
        if self.fatal is not None:
            raise self.fatal
        if self._closing:
            raise ConnectionLost("producer is closed")
        if properties and not all(isinstance(v, str) for v in properties.values()):
            # Pulsar closes the whole connection (1011) on a null property value.
            raise TypeError("property values must be strings")
        data = payload.encode() if isinstance(payload, str) else payload
        await self._window.acquire()
        if self.fatal is not None or self._closing:  # it happened while we waited for room
            self._window.release()
            raise self.fatal or ConnectionLost("producer is closed")
        self._next_context += 1
        context = str(self._next_context)
        # The frame by hand: base64 and a decimal context need no escaping; properties and key
        # go through one shared encoder (json.dumps with options builds a new one per call).
        frame = '{"payload":"' + base64.b64encode(data).decode("ascii") + '","context":"' + context + '"'
        if properties:
            frame += ',"properties":' + _ENCODE(dict(properties))
        if key is not None:
            frame += ',"key":' + _ENCODE(key)
        future: asyncio.Future[MessageId] = asyncio.get_running_loop().create_future()
        pending = _Pending(frame + "}", future, time.monotonic())
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
        flight, then close the WebSocket cleanly; what is still unanswered fails with ConnectionLost."""
        if self._closing:
            return
        if drain_seconds is None:
            drain_seconds = self.connector.settings.shutdown_timeout_seconds / 2
        if self._pending and self._connected.is_set() and drain_seconds > 0:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_seconds)
        self._closing = True
        for task in (self._supervisor, self._sweeper):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._supervisor, self._sweeper) if t), return_exceptions=True)
        await close_quietly(self._ws)
        self._connected.clear()
        self._state_changed()
        self._fail_all(ConnectionLost("producer closed before the broker answered"), reason="closed")

    # -- internals ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        params = {"producerName": self.name} if self.name else {}
        while not self._closing:
            try:
                ws = await self.connector.open("producer", params=params)
            except StreamError as error:
                self.last_error = str(error)
                if not error.retryable:
                    log.error("producer cannot connect", error=str(error))
                    self.fatal = error
                    self._fail_all(error, reason=type(error).__name__)
                    self._state_changed()
                    return
                self._state_changed()
                delay = self._backoff.next_delay()
                log.warning(
                    "producer connection failed; retrying", error=str(error), retry_in=round(delay, 3)
                )
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
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
                await self._read(ws)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
                self.last_error = f"connection lost: {error}"
            finally:
                self._connected.clear()
            if not self._closing:
                if self.last_error is None:
                    self.last_error = "connection closed by the broker"
                self._state_changed()
                log.warning("producer connection lost; reconnecting", in_flight=len(self._pending))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        release = self._window.release
        observe = metrics.PUBLISH_LATENCY.observe
        published = metrics.MESSAGES_PUBLISHED
        loads = json.loads
        text = aiohttp.WSMsgType.TEXT
        async for msg in ws:
            if msg.type != text:
                if msg.type == aiohttp.WSMsgType.ERROR:  # e.g. over 5 MiB: counted, then reconnect
                    note_error_frame("producer", msg.data)
                continue
            try:
                answer = loads(msg.data)
                context = answer.get("context")
                result = answer["result"]
            except (ValueError, KeyError, AttributeError, TypeError):
                metrics.MALFORMED_FRAMES.labels(kind="producer_answer").inc()
                log.warning("malformed answer from broker", frame=str(msg.data)[:200])
                continue
            pending = self._pending.pop(context, None) if isinstance(context, str) else None
            if pending is None:
                if result != "ok":
                    # Pulsar answers a frame it could not parse without a context (send-error:3).
                    log.warning(
                        "broker reported an uncorrelated error", result=result, error=answer.get("errorMsg")
                    )
                elif self._issued(context):
                    continue  # a late answer to a message that already timed out: not malformed
                metrics.MALFORMED_FRAMES.labels(kind="unknown_context").inc()
                continue
            release()
            if not self._pending:
                self._drained.set()
            if pending.future.done():
                continue
            if result == "ok":
                published.inc()
                observe(time.monotonic() - pending.started)
                pending.future.set_result(str(answer.get("messageId", "")))
            else:
                code = str(result).removeprefix("send-error:")
                metrics.PUBLISH_ERRORS.labels(reason=f"send_error_{code}"[:32]).inc()
                pending.future.set_exception(SendError(code, str(answer.get("errorMsg", ""))))

    def _issued(self, context: object) -> bool:
        return isinstance(context, str) and context.isdigit() and 0 < int(context) <= self._next_context

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
                    pending.future.set_exception(
                        SendTimeout(f"no answer from the broker within {self.send_timeout:g} s")
                    )

    def _fail_all(self, error: StreamError, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            self._window.release()
            if not p.future.done():
                metrics.PUBLISH_ERRORS.labels(reason=reason.lower()[:32]).inc()
                p.future.set_exception(error)
