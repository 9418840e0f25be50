"""What every chaos scenario shares: its outcome, memory sampling, and how messages are counted.

How the published set is known: the producer service logs `published` with its `seq` for every
message the broker acknowledged (PUBLISH_INTERVAL_SECONDS > 0 keeps per-message logs on). A
message that is never acknowledged is logged as `publish_failed` and is not counted as
published (it is an error the caller saw, not a silent loss). Received: the consumers'
`received` lines (LOG_PAYLOADS=true) with `properties.seq`. `lost` = published - received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from harness import Cluster, Service, is_event, log_time, published_seqs, received_seqs

QUICK = os.environ.get("CHAOS_QUICK") == "1"
PRODUCER_ID = "chaos-producer"
RATE_INTERVAL = "0.001"  # 1,000 msg/s
FAST_RECOVERY = {"RECONNECT_MAX_SECONDS": "0.5"}


@dataclass
class Outcome:
    scenario: str
    published: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    max_takeover_s: float | None = None
    peak_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: Named pass/fail verdicts beyond "nothing lost"; any False fails the suite.
    checks: dict[str, bool] = field(default_factory=dict)

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]

    def as_json(self) -> dict[str, Any]:
        if "skipped" in self.extra:  # nothing was measured: no figures that could pass for zeros
            return {
                "scenario": self.scenario,
                **dict.fromkeys(("published", "received", "lost", "duplicates")),
                "max_takeover_s": None,
                "peak_rss_mb": None,
                **self.extra,
            }
        return {
            "scenario": self.scenario,
            "published": self.published,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "max_takeover_s": self.max_takeover_s,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            **self.extra,
            **({"checks": self.checks} if self.checks else {}),
        }


class RssSampler:
    """Samples the resident memory of every process of a cluster twice a second."""

    def __init__(self, cluster: Cluster, extra: list[Service] | None = None) -> None:
        self.cluster = cluster
        self.extra = extra or []
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def sample(self) -> None:
        now = time.monotonic()
        for svc in [*self.cluster.services, *self.extra]:
            if svc.proc is None or svc.proc.returncode is not None:
                continue
            with contextlib.suppress(OSError, AssertionError):
                self.samples.setdefault(svc.name, []).append((now, svc.rss_mb()))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    def peak(self, name: str | None = None) -> float:
        series = [v for n, s in self.samples.items() if name in (None, n) for _, v in s]
        return max(series, default=0.0)

    def growth(self, name: str, since: float) -> float:
        """Peak of the last third minus peak of the first third of the samples after `since`."""
        values = [v for t, v in self.samples.get(name, []) if t >= since]
        if len(values) < 6:
            return 0.0
        third = len(values) // 3
        return max(values[-third:]) - max(values[:third])


# -- log helpers -----------------------------------------------------------------------------


def seqs_of(svc: Service) -> list[int]:
    return received_seqs(svc, producer_id=PRODUCER_ID)


class Ledger:
    """Received seqs of every consumer incarnation (a restart clears a Service's lines)."""

    def __init__(self) -> None:
        self.archived: list[int] = []

    def archive(self, svc: Service) -> None:
        self.archived.extend(seqs_of(svc))

    def all(self, *live: Service) -> list[int]:
        out = list(self.archived)
        for svc in live:
            out.extend(seqs_of(svc))
        return out


async def wait_receiving(svc: Service, timeout: float = 30.0, start: int | None = None) -> dict[str, Any]:
    return await svc.wait_for(
        is_event("received"), timeout=timeout, start=len(svc.lines) if start is None else start
    )


async def delivered_again(consumer: Service, marker: int, timeout: float = 60.0) -> float:
    """Wall-clock time of the first delivery on a connection opened after log index `marker`."""
    connected = await consumer.wait_for(
        lambda line: line.get("event") == "connected" and line.get("endpoint") == "consumer",
        timeout=timeout,
        start=marker,
    )
    index = consumer.lines.index(connected)
    return log_time(await consumer.wait_for(is_event("received"), timeout=timeout, start=index + 1))


async def start_producer(cluster: Cluster, **env: str) -> Service:
    """The producer service, once connected: it logs `listening` before its broker connection is
    up, and a POST in between is a 503 (busy machines showed it)."""
    defaults = {"PUBLISH_INTERVAL_SECONDS": RATE_INTERVAL, "PRODUCER_ID": PRODUCER_ID, "LOG_LEVEL": "info"}
    producer = await cluster.start_producer("producer", **{**defaults, **FAST_RECOVERY, **env})
    await producer.wait_http("/readyz", lambda status, _: status == 200, timeout=60)
    return producer


async def settle(
    outcome: Outcome, producer: Service, consumers: list[Service], ledger: Ledger, timeout: float = 90.0
) -> None:
    """Stop the producer (it finishes in-flight work), wait for delivery, count."""
    await producer.stop()
    published = set(published_seqs(producer))
    failed = len(producer.events("publish_failed"))
    deadline = time.monotonic() + timeout
    while True:
        got = ledger.all(*consumers)
        missing = published - set(got)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    outcome.published = len(published)
    outcome.received = len(set(got) & published)
    outcome.lost = len(missing)
    outcome.duplicates = len(got) - len(set(got))
    outcome.extra["publish_failed"] = failed
    if missing:
        outcome.extra["lost_examples"] = sorted(missing)[:20]
    elapsed = max(producer_runtime(producer), 1e-9)
    outcome.extra["rate_msg_s"] = round(len(published) / elapsed)


def producer_runtime(producer: Service) -> float:
    lines = producer.events("published")
    if len(lines) < 2:
        return 1.0
    return log_time(lines[-1]) - log_time(lines[0])
