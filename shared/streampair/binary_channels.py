"""The binary transport's channels: one pulsar-client producer, consumer or reader each.

A channel watches its connection (`is_connected()` every `POLL_SECONDS`: pulsar-client has no
callback), reports every change to its facade, and declares itself lost after
`LOST_AFTER_SECONDS` disconnected (transport.py says why). The hot paths (send, receive, ack)
use the `_pulsar` objects directly; every C++ callback here only appends or schedules, and none
can raise (an exception escaping a pulsar-client callback aborts the process).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import _pulsar  # type: ignore[import-not-found]

from streampair.binary_native import (
    OK,
    await_native,
    call_soon,
    message_id_text,
    parse_message_id,
    result_name,
)
from streampair.errors import ConnectionLost, MessageTooLarge, SendError, SendTimeout, StreamError
from streampair.message import Message
from streampair.transport import ChannelLoss, ProducerEvents, SubscriberEvents

#: How often a channel asks the C++ client whether it is connected (one cheap C++ call).
POLL_SECONDS = 0.25
#: Disconnected this long, a channel is lost: closed and reopened on the facade's backoff.
LOST_AFTER_SECONDS = 2.0


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
        if properties:  # pybind11 converts a dict (any other mapping: copied into one)
            builder.properties(properties if type(properties) is dict else dict(properties))
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
