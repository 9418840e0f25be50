"""What the consumer does with each message: log it, measure it, check its sequence.

Nothing in a message can make this raise: `seq`, `sent_at` and `producer_id` are parsed by
total functions, and a value that is not well-formed is treated as absent and counted
(`streampair_malformed_properties_total`). The one deliberate exception is `FAIL_ON_PROPERTY`,
a switch for demos and fault-injection tests: a message carrying that property fails, so its
retries and dead-lettering can be watched.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from streampair.logs import get_logger
from streampair.message import Message

from consumer import metrics
from consumer.tracking import SequenceTracker

log = get_logger("consumer.handler")

T = TypeVar("T")

_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True
_PRODUCER_ID = re.compile(r"[\x21-\x7e]{1,100}")  # printable ASCII, as PRODUCER_ID allows
#: End-to-end latencies outside [0, a day] come from clocks or forgeries, not from the stream.
MAX_LATENCY_SECONDS = 86_400.0


class SimulatedFailure(RuntimeError):
    """Raised for a message that carries the FAIL_ON_PROPERTY property."""


def parse_seq(value: str | None) -> int | None:
    return int(value) if value is not None and _SEQ.fullmatch(value) else None


def parse_sent_at(value: str | None) -> float | None:
    """Seconds since the epoch, from the producer's milliseconds."""
    return int(value) / 1000 if value is not None and _SEQ.fullmatch(value) else None


def parse_producer_id(value: str | None) -> str | None:
    return value if value is not None and _PRODUCER_ID.fullmatch(value) else None


class MessageHandler:
    def __init__(
        self, log_payloads: bool = True, ordered: bool = True, fail_on_property: str | None = None
    ) -> None:
        self.tracker = SequenceTracker(ordered=ordered)
        self.received = 0
        self.malformed = 0
        self.log_payloads = log_payloads
        self.fail_on_property = fail_on_property

    async def handle(self, message: Message) -> None:
        self.received += 1
        props = message.properties
        if self.fail_on_property is not None and self.fail_on_property in props:
            raise SimulatedFailure(
                f"message carries the {self.fail_on_property!r} property (FAIL_ON_PROPERTY)"
            )
        producer_id = self._parsed("producer_id", props, parse_producer_id)
        seq = self._parsed("seq", props, parse_seq)
        sent_at = self._parsed("sent_at", props, parse_sent_at)
        verdict = None
        if producer_id is not None and seq is not None:
            verdict = self.tracker.observe(producer_id, seq)
        latency_ms = None
        latency = time.time() - sent_at if sent_at is not None else -1.0
        # Clock skew or a forged sent_at must not skew the histogram; duplicates are not timed.
        if 0 <= latency <= MAX_LATENCY_SECONDS and verdict != "duplicate":
            metrics.END_TO_END_LATENCY.observe(latency)
            latency_ms = round(latency * 1000, 1)
        if self.log_payloads:
            log.info(
                "received",
                payload=message.text()[:1000],
                properties=props,
                key=message.key,
                message_id=message.id,
                redelivery_count=message.redelivery_count,
                latency_ms=latency_ms,
                verdict=verdict,
            )

    def _parsed(self, name: str, props: dict[str, str], parse: Callable[[str | None], T | None]) -> T | None:
        """The parsed property; a present but malformed one is counted and taken as absent."""
        raw = props.get(name)
        value = parse(raw)
        if raw is not None and value is None:
            self.malformed += 1
            metrics.MALFORMED_PROPERTIES.labels(property=name).inc()
        return value
