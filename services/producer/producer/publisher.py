"""The publishing loop: one message every `publish_interval_seconds`, like Macrometa's example.

Each message carries `producer_id`, `seq` (1, 2, 3, ... per process) and `sent_at` (epoch ms)
so consumers can measure latency and detect gaps and duplicates. A sequence number is taken
only while connected, so a broker outage pauses the sequence instead of burning numbers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

from streampair.backoff import sleep_unless
from streampair.errors import SendTimeout, SendUnconfirmed, StreamError
from streampair.logs import get_logger
from streampair.producer import Producer

log = get_logger("producer.publisher")


class Publisher:
    def __init__(self, producer: Producer, producer_id: str, interval: float) -> None:
        self.producer = producer
        self.producer_id = producer_id
        self.interval = interval
        self.seq = 0
        self.published = 0
        self.failed = 0
        #: Written, but the broker never answered: perhaps published (consumers will tell).
        self.unconfirmed = 0
        self._in_flight: set[asyncio.Future[str]] = set()
        self._verbose = interval > 0  # one log line per message at 1/s; none in a flood

    def message(self, seq: int) -> tuple[str, dict[str, str]]:
        number = random.randint(1, 1_000_000)
        text = f"Hello from {self.producer_id}! Here is your random message number {number}"
        properties = {
            "producer_id": self.producer_id,
            "seq": str(seq),
            "sent_at": str(int(time.time() * 1000)),
        }
        return text, properties

    async def run(self, stopping: asyncio.Event, drain_seconds: float) -> None:
        """Publish until `stopping`; then wait up to `drain_seconds` for the answers in flight.

        Room for one more message is the producer's window (`max_in_flight`): `send_async`
        waits for it, so a slow broker slows the loop instead of growing memory.
        """
        next_at = time.monotonic()
        while not stopping.is_set():
            if not self.producer.connected:
                await _first(self.producer.wait_connected(), stopping.wait())
                continue
            if self.interval > 0:
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay < -self.interval:  # fell far behind (a pause): do not burst to catch up
                    next_at = time.monotonic()
                elif delay > 0 and await sleep_unless(stopping, delay):
                    break
            self.seq += 1
            await self._publish(self.seq)
        # Give what is in flight a bounded time to be answered; the producer's close() fails
        # the rest, and each is then counted and logged as failed, never dropped silently.
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=drain_seconds)

    async def _publish(self, seq: int) -> None:
        """Write one message; its answer is handled by `_answered`, with no task per message."""
        text, properties = self.message(seq)
        try:
            future = await self.producer.send_async(text, properties)
        except StreamError as error:
            self._failed(seq, error)
            return
        self._in_flight.add(future)
        future.add_done_callback(partial(self._answered, seq, text))

    def _answered(self, seq: int, text: str, future: asyncio.Future[str]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self._failed(seq, "cancelled")
            return
        error = future.exception()
        if error is not None:
            self._failed(seq, error)
            return
        self.published += 1
        if self._verbose:
            log.info("published", seq=seq, message_id=future.result(), payload=text)

    def _failed(self, seq: int, error: BaseException | str) -> None:
        if isinstance(error, SendUnconfirmed) or (isinstance(error, SendTimeout) and error.written):
            self.unconfirmed += 1
            log.warning("publish_unconfirmed", seq=seq, error=str(error))
            return
        self.failed += 1
        log.error("publish_failed", seq=seq, error=str(error))


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
