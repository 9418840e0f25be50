"""StandbyLoop: hold the subscription, or wait as a standby until it is free.

In Exclusive mode the broker refuses a second consumer at the handshake (HTTP 409). Instead
of crashing like the Node.js example, the refused consumer says so once, reports role
`standby`, stays Ready (it can take over) and tries again every `standby_retry_seconds`
(jittered, so several standbys do not retry in lockstep). When the active consumer goes
away the broker releases the subscription, the next attempt succeeds, and the new active
consumer receives every message the old one had not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import Enum
from streampair import metrics
from streampair.backoff import Backoff, jittered
from streampair.consumer import Consumer
from streampair.errors import NamespaceNotFound, StreamError, StreamNotFound, SubscriptionBusy
from streampair.logs import get_logger
from streampair.runtime import ServiceExit, ServiceStatus

from consumer.handler import MessageHandler
from consumer.settings import ConsumerSettings

log = get_logger("consumer.standby")

#: Defined here, not in the library: a producer has no consumer role to export.
CONSUMER_ROLE = Enum(
    "streampair_consumer_role", "Role of this consumer process", states=["connecting", "active", "standby"]
)

#: Exit status for ON_BUSY=exit, so scripts can tell "refused" from "crashed" (1) and "misconfigured" (2).
EXIT_BUSY = 3


class StandbyLoop:
    def __init__(
        self, consumer: Consumer, handler: MessageHandler, settings: ConsumerSettings, status: ServiceStatus
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.settings = settings
        self.status = status
        self.rejections = 0
        self.became_active_at: float | None = None
        self._labels = metrics.CONSUMER_ACTIVE.labels(
            subscription=settings.subscription_name, subscription_type=settings.subscription_type
        )
        self._set_role("connecting")
        consumer.on_connection = self._on_connection

    def _on_connection(self, connected: bool) -> None:
        if connected:
            self._become_active()
        elif self.status.role == "active":
            self._set_role("connecting")
            self.status.connected = False
            if self.status.stopping:
                return
            log.warning(
                "lost the subscription's connection; reconnecting",
                subscription=self.settings.subscription_name,
            )

    def _set_role(self, role: str) -> None:
        self.status.role = role
        CONSUMER_ROLE.state(role)
        self._labels.set(1 if role == "active" else 0)

    async def run(self, stopping: asyncio.Event) -> None:
        stopper = asyncio.create_task(self._interrupt_on(stopping))
        try:
            await self._loop(stopping)
        finally:
            stopper.cancel()
            self._set_role("connecting")
            self.status.connected = False
            await self.consumer.close()

    async def _interrupt_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        # Ends iteration after the message being handled is acked; unacked ones are redelivered.
        self.consumer.interrupt()

    async def _loop(self, stopping: asyncio.Event) -> None:
        busy_said = False
        # One attempt per round, so that /status and /readyz tell a reachable broker (active,
        # or standby after a 409) from an unreachable one (connecting, not ready).
        retry = Backoff(base=0.1, cap=self.settings.reconnect_max_seconds)
        while not stopping.is_set():
            try:
                if not self.consumer.connected:
                    await self.consumer.connect()
                retry.reset()
                busy_said = False
                # Iteration reconnects by itself after a network failure; a 409 on such a
                # reconnect (someone took the subscription meanwhile) comes out here.
                await self._consume(stopping)
            except SubscriptionBusy as error:
                self._on_busy(error, first=not busy_said)
                busy_said = True
                await _sleep_unless(stopping, jittered(self.settings.standby_retry_seconds))
            except StreamError as error:
                if stopping.is_set():
                    break  # a failure while shutting down is part of shutting down
                # StreamNotFound: the producer creates the stream; a consumer that starts first waits.
                # A missing tenant or namespace is a wrong setting: waiting cannot fix it.
                waits = isinstance(error, StreamNotFound) and not isinstance(error, NamespaceNotFound)
                if not (error.retryable or waits):
                    raise
                self._set_role("connecting")
                self.status.connected = False
                self.status.last_error = str(error)
                delay = retry.next_delay()
                log.warning("cannot subscribe yet; retrying", error=str(error), retry_in=round(delay, 3))
                await _sleep_unless(stopping, delay)

    def _on_busy(self, error: StreamError, first: bool) -> None:
        self.rejections += 1
        metrics.SUBSCRIPTION_REJECTIONS.labels(reason="consumer_busy").inc()
        self.status.last_error = str(error)
        s = self.settings
        if s.on_busy == "exit":
            log.error(
                f"subscription busy: another consumer holds {s.subscription_type} subscription "
                f"'{s.subscription_name}' on '{s.stream_name}'; exiting (ON_BUSY=exit)"
            )
            raise ServiceExit(EXIT_BUSY, "subscription busy")
        self._set_role("standby")
        self.status.connected = True  # the broker answered: we are able to take over
        if first:
            log.warning(
                f"subscription busy: another consumer holds {s.subscription_type} subscription "
                f"'{s.subscription_name}' on '{s.stream_name}'; waiting as standby",
                retry_every_seconds=s.standby_retry_seconds,
            )
        else:
            log.debug("subscription still busy", rejections=self.rejections)

    def _become_active(self) -> None:
        was_standby = self.status.role == "standby"
        self._set_role("active")
        self.status.connected = True
        self.status.last_error = None
        self.became_active_at = time.time()
        s = self.settings
        log.info(
            "took over the subscription" if was_standby else "subscribed",
            subscription=s.subscription_name,
            subscription_type=s.subscription_type,
            stream=s.stream_name,
            role="active",
        )

    async def _consume(self, stopping: asyncio.Event) -> None:
        async for message in self.consumer:
            await self.handler.handle(message)
            await self.consumer.ack(message)
            if stopping.is_set():
                break


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
