"""StandbyLoop: hold the subscription, or wait as a standby until it is free.

In Exclusive mode the broker refuses a second consumer (WebSocket: HTTP 409 at the handshake;
binary protocol: ConsumerBusy; both raise SubscriptionBusy). Instead
of crashing like the Node.js example, the refused consumer says so once, reports role
`standby`, stays Ready (it can take over) and tries again every `standby_retry_seconds`
(jittered, so several standbys do not retry in lockstep). When the active consumer goes
away the broker releases the subscription, the next attempt succeeds, and the new active
consumer receives every message the old one had not acknowledged.

The loop is the one owner of the service's status: every change goes through `_report`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from streampair.backoff import Backoff, jittered, retry
from streampair.connection import ConnectionState
from streampair.consumer import Consumer
from streampair.errors import NamespaceNotFound, StreamError, StreamNotFound, SubscriptionBusy, Unauthorized
from streampair.logs import get_logger
from streampair.processing import Processor
from streampair.runtime import Role, ServiceExit, ServiceStatus

from consumer import metrics
from consumer.settings import ConsumerSettings

log = get_logger("consumer.standby")

#: Exit status for ON_BUSY=exit, so scripts can tell "refused" from "crashed" (1) and "misconfigured" (2).
EXIT_BUSY = 3


@dataclass
class StandbyDelay(Backoff):
    """A busy subscription is tried again every `period` (jittered); anything else backs off."""

    period: float = 1.0

    def delay_after(self, error: StreamError) -> float:
        if isinstance(error, SubscriptionBusy):
            return jittered(self.period)
        return super().delay_after(error)


class StandbyLoop:
    def __init__(
        self, consumer: Consumer, processor: Processor, settings: ConsumerSettings, status: ServiceStatus
    ) -> None:
        self.consumer = consumer
        self.processor = processor
        self.settings = settings
        self.status = status
        self.rejections = 0
        self.became_active_at: float | None = None
        self._busy_said = False
        #: The last refusal of our credentials said at warning level: a repeat is debug (no log storm).
        self._refusal_said: str | None = None
        self._delays = StandbyDelay(
            base=0.1, cap=settings.reconnect_max_seconds, period=settings.standby_retry_seconds
        )
        self._active_gauge = metrics.ACTIVE.labels(
            subscription=settings.subscription_name, subscription_type=settings.subscription_type
        )
        self._report("connecting", connected=False)
        consumer.on_state = self._on_connection

    def _report(
        self, role: Role, *, connected: bool, error: str | None = None, blocked: bool = False
    ) -> None:
        """The one place that changes the service's status and the role metrics."""
        self.status.update(role=role, connected=connected, error=error, blocked=blocked)
        metrics.ROLE.state(role)
        self._active_gauge.set(1 if role == "active" else 0)

    def _on_connection(self, state: ConnectionState) -> None:
        if state.blocked:
            # Connected, but a message it cannot receive stops the flow: say so, not Ready.
            self._report("active", connected=True, error=state.error, blocked=True)
        elif state.connected:
            self._become_active()
        elif self.status.role != "standby":  # a standby holds no connection to lose
            was_active = self.status.role == "active"
            self._report("connecting", connected=False, error=state.error)  # /readyz says why
            if was_active and not self.status.stopping:
                log.warning(
                    "subscription_connection_lost",
                    subscription=self.settings.subscription_name,
                    error=state.error,
                )

    async def run(self, stopping: asyncio.Event) -> None:
        stopper = asyncio.create_task(self._interrupt_on(stopping))
        try:
            await retry(
                lambda: self._hold(stopping),
                stop=stopping,
                backoff=self._delays,
                retry_if=self._may_retry,
                on_retry=self._waiting,
            )
        except SubscriptionBusy:  # only with ON_BUSY=exit (see _may_retry)
            self._count_rejection()
            s = self.settings
            log.error(
                "subscription_busy",
                message=f"another consumer holds {s.subscription_type} subscription "
                f"'{s.subscription_name}' on '{s.stream_name}'; exiting (ON_BUSY=exit)",
            )
            raise ServiceExit(EXIT_BUSY, "subscription busy") from None
        finally:
            stopper.cancel()
            self._report("connecting", connected=False, error=self.status.last_error)
            await self.processor.close()
            await self.consumer.close()

    async def _interrupt_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        # Ends iteration after the message being handled is acked; unacked ones are redelivered.
        self.consumer.interrupt()

    async def _hold(self, stopping: asyncio.Event) -> None:
        """Subscribe (one attempt) and consume until stopping or until a refusal comes out.

        Iteration reconnects by itself after a network failure; a 409 on such a reconnect
        (someone took the subscription meanwhile) is raised here like a first refusal.
        """
        if not self.consumer.attached:  # (binary: attached and reconnecting by itself counts)
            await self.consumer.connect()
        self._delays.reset()
        self._busy_said = False
        self._refusal_said = None
        async for message in self.consumer:
            await self.processor.process(message)  # acks, retries or dead-letters; never raises
            if stopping.is_set():
                break

    def _may_retry(self, error: StreamError) -> bool:
        if isinstance(error, SubscriptionBusy):
            return self.settings.on_busy == "standby"
        # StreamNotFound: the producer creates the stream; a consumer that starts first waits.
        # A missing tenant or namespace is a wrong setting: waiting cannot fix it.
        waits = isinstance(error, StreamNotFound) and not isinstance(error, NamespaceNotFound)
        return error.retryable or waits

    def _waiting(self, error: StreamError, delay: float) -> None:
        if not isinstance(error, SubscriptionBusy):
            self._report("connecting", connected=False, error=str(error))
            # A refused credential is said once (it is retried every 5 s until a rotated token or a
            # grant fixes it); /readyz and the attempts metric go on telling.
            repeated = isinstance(error, Unauthorized) and str(error) == self._refusal_said
            (log.debug if repeated else log.warning)(
                "subscribe_failed", error=str(error), retry_in=round(delay, 3)
            )
            if isinstance(error, Unauthorized):
                self._refusal_said = str(error)
            return
        self._count_rejection()
        # The broker answered: a standby can take over, so it is connected and Ready.
        self._report("standby", connected=True, error=str(error))
        if self._busy_said:
            log.debug("subscription_still_busy", rejections=self.rejections)
            return
        self._busy_said = True
        s = self.settings
        log.warning(
            "subscription_busy",
            message=f"another consumer holds {s.subscription_type} subscription "
            f"'{s.subscription_name}' on '{s.stream_name}'; waiting as standby",
            retry_every_seconds=s.standby_retry_seconds,
        )

    def _count_rejection(self) -> None:
        self.rejections += 1
        metrics.SUBSCRIPTION_REJECTIONS.labels(reason="consumer_busy").inc()

    def _become_active(self) -> None:
        was_standby = self.status.role == "standby"
        self._report("active", connected=True)
        self.became_active_at = time.time()
        s = self.settings
        log.info(
            "took_over" if was_standby else "subscribed",
            message="took over the subscription" if was_standby else "subscribed",
            subscription=s.subscription_name,
            subscription_type=s.subscription_type,
            stream=s.stream_name,
            role="active",
        )
