"""Waiting and trying again: one backoff, one retry loop, one interruptible sleep.

Every loop in the library, the services and the bench that waits for a broker goes through
`retry` and `sleep_unless`, so a stop request ends each of them the same way and at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from streampair.errors import StreamError

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays for successive retries: uniform in [0, min(cap, base * 2**attempt)].

    Full jitter (AWS architecture blog, "Exponential Backoff and Jitter") spreads clients
    apart after a broker restart, so they do not stampede it in lockstep.
    """

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def ceiling(self) -> float:
        return float(min(self.cap, self.base * (2 ** min(self.attempt, 62))))

    def next_delay(self) -> float:
        delay = self.rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def delay_after(self, error: StreamError) -> float:
        """The wait before the next attempt after `error`, never below what the error asks for."""
        return max(self.next_delay(), error.min_retry_delay)

    def reset(self) -> None:
        self.attempt = 0


def jittered(seconds: float, spread: float = 0.2, rng: random.Random | None = None) -> float:
    """`seconds` give or take `spread` (a fraction), for fixed-period retries such as a standby's."""
    r = rng or random
    return max(0.0, seconds * (1.0 + r.uniform(-spread, spread)))


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile. True when stopping."""
    if not stop.is_set() and seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def is_retryable(error: StreamError) -> bool:
    return error.retryable


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    stop: asyncio.Event,
    backoff: Backoff,
    retry_if: Callable[[StreamError], bool] = is_retryable,
    on_retry: Callable[[StreamError, float], None] | None = None,
) -> T | None:
    """Run `attempt` until it returns; None if `stop` is set first.

    A `StreamError` for which `retry_if` is false is raised to the caller; any other is
    reported to `on_retry(error, delay)` and tried again after `backoff.delay_after(error)`.
    The backoff is reset after a success.
    """
    while not stop.is_set():
        try:
            result = await attempt()
        except StreamError as error:
            if stop.is_set():
                return None  # a failure while stopping is part of stopping
            if not retry_if(error):
                raise
            delay = backoff.delay_after(error)
            if on_retry is not None:
                on_retry(error, delay)
            await sleep_unless(stop, delay)
            continue
        backoff.reset()
        return result
    return None
