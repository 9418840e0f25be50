"""Fault-injection suite: `make chaos` (`python -m bench.chaos`) -> bench/results/chaos.json.

Everything runs on loopback as real processes (`harness`), each scenario in its own
temporary data directory, and everything started is stopped again, also on failure or Ctrl-C.
Scenarios:

- `consumer_sigkill`: two Exclusive consumers (active + standby) under a steady 1,000 msg/s;
  the active one is SIGKILLed 50 times and restarted as the new standby each time.
- `broker_sigkill`: the embedded broker is `kill -9`ed and restarted 10 times under load.
- `proxy_drop` / `proxy_freeze`: a TCP proxy between the services and the broker resets every
  connection, or black-holes it (half-open); the WebSocket heartbeat must find the dead
  connection and the services reconnect. Detection time is measured at the proxy.
- `slow_consumer`: a consumer that handles 50 msg/s under 1,000 msg/s: memory of the broker and
  the consumer must stay flat (backpressure), then it drains the backlog without loss.
- `pulsar_sigkill`: a real Apache Pulsar standalone (`bench.chaos_pulsar`, started once) is
  `kill -9`ed 10 times under 500 msg/s and restarted each time on the same data and ports; one
  Exclusive consumer. Reported as skipped (not failed) where Pulsar cannot run (no Java 17+,
  no jars and no Maven to fetch them, or the fetch fails). `pulsar_sigkill_binary`: the same
  with the services on Pulsar's binary protocol (`pulsar://`).

How the published set is known: the producer service logs `published` with its `seq` for every
message the broker acknowledged (PUBLISH_INTERVAL_SECONDS > 0 keeps per-message logs on). A
message that is never acknowledged is logged as `publish failed` and is not counted as
published (it is an error the caller saw, not a silent loss). Received: the consumers'
`received` lines (LOG_PAYLOADS=true) with `properties.seq`. `lost` = published - received.

Exit status 1 if anything was lost or a scenario failed. `CHAOS_QUICK=1` runs a short version.
`python -m bench.chaos NAME...` runs only the named scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import chaos_pulsar
from bench.chaos_proxy import FaultProxy
from harness import (
    Cluster,
    Service,
    active_and_standby,
    is_busy_warning,
    is_event,
    log_time,
    published_seqs,
    received_seqs,
    until,
)

RESULTS = Path(__file__).resolve().parent / "results" / "chaos.json"
QUICK = os.environ.get("CHAOS_QUICK") == "1"
PRODUCER_ID = "chaos-producer"
RATE_INTERVAL = "0.001"  # 1,000 msg/s
SCENARIO_TIMEOUT = 300.0
TOTAL_TIMEOUT = 900.0

CONSUMER_KILLS = 5 if QUICK else 50
BROKER_KILLS = 3 if QUICK else 10
PROXY_FAULTS = 2 if QUICK else 5  # of each kind
SLOW_SECONDS = 10.0 if QUICK else 40.0
# Each Pulsar kill costs ~10 s (a JVM start to healthy takes 6-8 s): 10 of them fit in ~2.5 min.
PULSAR_KILLS = 2 if QUICK else 10
PULSAR_RATE_INTERVAL = "0.002"  # 500 msg/s

FAST_RECOVERY = {"RECONNECT_MAX_SECONDS": "0.5"}
PROTOCOLS = {"websocket": "WebSocket API", "binary": "binary protocol"}


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
    defaults = {"PUBLISH_INTERVAL_SECONDS": RATE_INTERVAL, "PRODUCER_ID": PRODUCER_ID, "LOG_LEVEL": "info"}
    return await cluster.start_producer("producer", **{**defaults, **FAST_RECOVERY, **env})


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


# -- scenarios -------------------------------------------------------------------------------


async def consumer_sigkill(cluster: Cluster) -> Outcome:
    out = Outcome("consumer_sigkill")
    await cluster.start_broker()
    env = {**FAST_RECOVERY, "STANDBY_RETRY_SECONDS": "0.2", "LOG_PAYLOADS": "true", "LOG_LEVEL": "info"}
    c1 = await cluster.start_consumer("consumer-1", **env)
    await c1.wait_for(is_event("subscribed"))
    c2 = await cluster.start_consumer("consumer-2", **env)
    await c2.wait_for(is_busy_warning)
    ledger = Ledger()
    with RssSampler(cluster) as rss:
        producer = await start_producer(cluster)
        active, standby = await active_and_standby(c1, c2)
        takeovers: list[float] = []
        resumes: list[float] = []
        for _ in range(CONSUMER_KILLS):
            await wait_receiving(active)
            await asyncio.sleep(random.uniform(0.1, 0.5))
            marker = len(standby.lines)
            killed_at = time.time()
            active.signal(signal.SIGKILL)
            took = await standby.wait_for(is_event("took_over"), timeout=30, start=marker)
            takeovers.append(log_time(took) - killed_at)
            first = await wait_receiving(standby, start=marker)
            resumes.append(log_time(first) - killed_at)
            await active.wait_exit(10)
            ledger.archive(active)
            await active.start()
            await active.wait_for(is_busy_warning, timeout=30)
            active, standby = standby, active
        await settle(out, producer, [c1, c2], ledger)
        rss.sample()
    out.max_takeover_s = round(max(takeovers), 3)
    out.peak_rss_mb = rss.peak()
    out.extra.update(
        kills=len(takeovers),
        median_takeover_s=round(sorted(takeovers)[len(takeovers) // 2], 3),
        max_resume_s=round(max(resumes), 3),
    )
    return out


async def broker_sigkill(cluster: Cluster) -> Outcome:
    out = Outcome("broker_sigkill")
    broker = await cluster.start_broker()
    consumer = await cluster.start_consumer("consumer-1", **FAST_RECOVERY, LOG_PAYLOADS="true")
    await consumer.wait_for(is_event("subscribed"))
    ledger = Ledger()
    outages: list[float] = []
    with RssSampler(cluster) as rss:
        producer = await start_producer(cluster)
        for _ in range(BROKER_KILLS):
            await wait_receiving(consumer)
            await asyncio.sleep(random.uniform(0.2, 0.8))
            killed_at = time.time()
            broker.signal(signal.SIGKILL)
            await broker.wait_exit(10)
            marker = len(consumer.lines)
            await cluster.start_broker()
            first = await wait_receiving(consumer, start=marker, timeout=60)
            outages.append(log_time(first) - killed_at)
        await settle(out, producer, [consumer], ledger)
        rss.sample()
    out.max_takeover_s = round(max(outages), 3)
    out.peak_rss_mb = rss.peak()
    out.extra.update(
        broker_kills=len(outages), note="max_takeover_s: kill -9 to first delivery after restart"
    )
    return out


async def proxy_fault(cluster: Cluster, kind: str) -> Outcome:
    out = Outcome(f"proxy_{kind}")
    await cluster.start_broker(BROKER_HEARTBEAT_SECONDS="1")
    proxy = FaultProxy(cluster.broker_port)
    port = await proxy.start()
    via = {"STREAM_URL": f"ws://127.0.0.1:{port}", "HEARTBEAT_SECONDS": "1", **FAST_RECOVERY}
    consumer = await cluster.start_consumer(
        "consumer-1", LOG_PAYLOADS="true", STANDBY_RETRY_SECONDS="0.2", **via
    )
    await consumer.wait_for(is_event("subscribed"))
    ledger = Ledger()
    client_detect: list[float] = []
    broker_detect: list[float | None] = []
    recoveries: list[float] = []
    try:
        with RssSampler(cluster) as rss:
            producer = await start_producer(cluster, **via)
            for _ in range(PROXY_FAULTS):
                await wait_receiving(consumer)
                await asyncio.sleep(random.uniform(0.2, 0.8))
                marker = len(consumer.lines)
                started = time.time()
                if kind == "drop":
                    proxy.drop()
                    recoveries.append(await delivered_again(consumer, marker) - started)
                    continue
                frozen = proxy.freeze()
                t0 = time.monotonic()
                # The services must notice by themselves (heartbeat) and come back.
                recoveries.append(await delivered_again(consumer, marker) - started)
                await until(lambda f=frozen: all(x.client_closed_at is not None for x in f), 15)
                client_detect.append(max((link.client_closed_at or time.monotonic()) - t0 for link in frozen))
                await until(lambda f=frozen: all(x.upstream_closed_at is not None for x in f), 15)
                ends = [link.upstream_closed_at for link in frozen]
                broker_detect.append(None if None in ends else max(e - t0 for e in ends if e))
                proxy.release(frozen)
            await settle(out, producer, [consumer], ledger)
            rss.sample()
    finally:
        await proxy.stop()
    out.max_takeover_s = round(max(recoveries), 3)
    out.peak_rss_mb = rss.peak()
    out.extra.update(faults=len(recoveries), heartbeat_seconds=1.0, broker_heartbeat_seconds=1.0)
    out.extra["note"] = "max_takeover_s: fault to first delivery on a new connection"
    if kind == "freeze":
        out.extra["max_service_detection_s"] = round(max(client_detect), 3)
        known = [d for d in broker_detect if d is not None]
        out.extra["max_broker_detection_s"] = (
            round(max(known), 3) if len(known) == len(broker_detect) else None
        )
    return out


async def slow_consumer(cluster: Cluster) -> Outcome:
    out = Outcome("slow_consumer")
    await cluster.start_broker()
    slow = cluster.add(
        "slow-consumer", "bench.chaos_slow_consumer", CHAOS_DELAY_SECONDS="0.02", **cluster.stream_env
    )
    await slow.start()
    await slow.wait_for(is_event("subscribed"))
    ledger = Ledger()
    with RssSampler(cluster) as rss:
        producer = await start_producer(cluster)
        since = time.monotonic()
        await asyncio.sleep(SLOW_SECONDS)
        backlog_at_end = int(producer.events("published")[-1]["seq"]) - len(seqs_of(slow))
        growth = {name: round(rss.growth(name, since), 1) for name in ("broker", "slow-consumer", "producer")}
        slow.signal(signal.SIGUSR1)  # drain at full speed
        await settle(out, producer, [slow], ledger, timeout=180)
        rss.sample()
    out.peak_rss_mb = rss.peak()
    out.extra.update(
        slow_seconds=SLOW_SECONDS,
        backlog_when_released=backlog_at_end,
        rss_growth_mb_last_vs_first_third=growth,
        peak_rss_mb_by_process={n: round(rss.peak(n), 1) for n in rss.samples},
        # Backpressure must hold the consumer and the producer flat. The embedded broker keeps a
        # subscription's unacknowledged backlog in memory (broker/topics.py), so its RSS grows
        # with the backlog: reported per 1,000 backlog messages, not judged here.
        memory_flat=growth["slow-consumer"] < 10 and growth["producer"] < 10,
        broker_growth_mb_per_1k_backlog=round(growth["broker"] / max(backlog_at_end / 1000, 1), 3),
    )
    return out


async def pulsar_sigkill(cluster: Cluster, transport: str = "websocket") -> Outcome:
    out = Outcome("pulsar_sigkill" if transport == "websocket" else f"pulsar_sigkill_{transport}")
    reason = chaos_pulsar.unavailable()
    if reason is not None:
        out.extra["skipped"] = reason
        return out
    pulsar = chaos_pulsar.ChaosPulsar()
    jvm_rss: list[float] = []

    async def sample_jvm() -> None:
        while True:
            mb = pulsar.rss_mb()
            if mb is not None:
                jvm_rss.append(mb)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_jvm())
    try:
        try:
            out.extra["pulsar_start_s"] = round(await pulsar.start(), 1)
        except chaos_pulsar.FetchFailed as error:
            out.extra["skipped"] = f"the Pulsar jars could not be fetched: {error}"
            return out
        # One fresh standalone per scenario, so the topic and the subscription are new.
        if transport == "binary":
            where = {
                "STREAM_URL": pulsar.binary_url,
                "STREAM_ADMIN_URL": f"http://127.0.0.1:{pulsar.web_port}",
            }
        else:
            where = {"STREAM_URL": pulsar.ws_url}
        cluster.stream_env.update(**where, STREAM_NAME="chaos-pulsar-sigkill")
        consumer = await cluster.start_consumer("consumer-1", **FAST_RECOVERY, LOG_PAYLOADS="true")
        # First: a new Pulsar subscription starts at the end of the topic.
        await consumer.wait_for(is_event("subscribed"), timeout=60)
        outages: list[float] = []
        after_healthy: list[float] = []
        with RssSampler(cluster) as rss:
            producer = await start_producer(cluster, PUBLISH_INTERVAL_SECONDS=PULSAR_RATE_INTERVAL)
            for _ in range(PULSAR_KILLS):
                await wait_receiving(consumer, timeout=60)
                await asyncio.sleep(random.uniform(2.5, 4.0))  # a few seconds at the full rate
                marker = len(consumer.lines)
                killed_at = time.time()
                await pulsar.kill9()
                await pulsar.restart()  # same data dir and ports, waits for health
                healthy_at = time.time()
                first = await delivered_again(consumer, marker, timeout=90)
                outages.append(first - killed_at)
                after_healthy.append(first - healthy_at)
            await settle(out, producer, [consumer], Ledger(), timeout=120)
            rss.sample()
        out.extra.update(pulsar_durability(producer, consumer))
        out.max_takeover_s = round(max(outages), 3)
        out.peak_rss_mb = rss.peak()
        out.extra.update(
            pulsar_kills=len(outages),
            max_restart_to_healthy_s=round(max(pulsar.restart_seconds), 1),
            max_healthy_to_first_delivery_s=round(max(after_healthy), 3),
            pulsar_jvm_peak_rss_mb=round(max(jvm_rss, default=0.0), 1),
            note=(
                f"Apache Pulsar 4.0.7 standalone ({PROTOCOLS[transport]}); max_takeover_s: kill -9 to the "
                "first delivery after the restart (includes the JVM start); peak_rss_mb: our processes only"
            ),
        )
        return out
    finally:
        sampler.cancel()
        pulsar.close()  # SIGKILL of the JVM (its data is thrown away) and its directory removed


def pulsar_durability(producer: Service, consumer: Service) -> dict[str, Any]:
    """Finer than seqs: the exact message (id) Pulsar answered `ok` for must be delivered, and
    duplicates are split by cause: a redelivery of the same message (the acknowledgement was not
    yet persisted in the cursor when the JVM died) or a second stored copy (the producer resent
    a message whose `ok` the kill swallowed)."""
    acked = {str(line.get("message_id")) for line in producer.events("published")}
    ids_by_seq: dict[int, list[str]] = {}
    for line in consumer.events("received"):
        props = line.get("properties") or {}
        if props.get("producer_id") == PRODUCER_ID and str(props.get("seq", "")).isdigit():
            ids_by_seq.setdefault(int(props["seq"]), []).append(str(line.get("message_id")))
    delivered = {i for ids in ids_by_seq.values() for i in ids}
    missing = sorted(acked - delivered)
    return {
        "acked_message_ids_not_delivered": len(missing),
        **({"acked_message_ids_not_delivered_examples": missing[:10]} if missing else {}),
        "duplicates_redelivered": sum(len(ids) - len(set(ids)) for ids in ids_by_seq.values()),
        "duplicates_stored_twice": sum(len(set(ids)) - 1 for ids in ids_by_seq.values()),
    }


# -- runner ----------------------------------------------------------------------------------


async def run_scenario(name: str, body: Callable[[Cluster], Awaitable[Outcome]]) -> Outcome:
    started = time.monotonic()
    print(f"chaos: {name} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            outcome = await asyncio.wait_for(body(cluster), SCENARIO_TIMEOUT)
        except Exception as error:  # recorded and reported; the suite goes on and fails at the end
            outcome = Outcome(name, extra={"error": f"{type(error).__name__}: {error}"[:2000]})
        finally:
            await cluster.stop()
    outcome.extra["seconds"] = round(time.monotonic() - started, 1)
    print(f"chaos: {name} done in {outcome.extra['seconds']} s", flush=True)
    return outcome


SCENARIOS: list[tuple[str, Callable[[Cluster], Awaitable[Outcome]]]] = [
    ("consumer_sigkill", consumer_sigkill),
    ("broker_sigkill", broker_sigkill),
    ("proxy_drop", lambda c: proxy_fault(c, "drop")),
    ("proxy_freeze", lambda c: proxy_fault(c, "freeze")),
    ("slow_consumer", slow_consumer),
    ("pulsar_sigkill", pulsar_sigkill),
    ("pulsar_sigkill_binary", lambda c: pulsar_sigkill(c, "binary")),
]


def table(outcomes: list[Outcome]) -> str:
    cols = ["scenario", "published", "received", "lost", "duplicates", "max_takeover_s", "peak_rss_mb"]
    rows = [[str(o.as_json()[c]) for c in cols] for o in outcomes]
    for row, o in zip(rows, outcomes, strict=True):
        if "skipped" in o.extra:
            row[1:] = ["skipped", *["-"] * (len(cols) - 2)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    for o in outcomes:
        if "error" in o.extra:
            lines.append(f"{o.scenario}: FAILED: {o.extra['error']}")
        elif "skipped" in o.extra:
            lines.append(f"{o.scenario}: skipped (not a failure): {o.extra['skipped']}")
    return "\n".join(lines)


async def main(only: list[str]) -> int:
    started = time.monotonic()
    outcomes: list[Outcome] = []
    unknown = sorted(set(only) - {n for n, _ in SCENARIOS})
    if unknown:
        print(f"chaos: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(n for n, _ in SCENARIOS)}")
        return 2
    chosen = [(n, b) for n, b in SCENARIOS if not only or n in only]
    for name, body in chosen:
        if time.monotonic() - started > TOTAL_TIMEOUT:
            outcomes.append(Outcome(name, extra={"error": "skipped: the suite ran out of time"}))
            continue
        outcomes.append(await run_scenario(name, body))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([o.as_json() for o in outcomes], indent=2) + "\n")
    print(table(outcomes))
    print(f"chaos: {time.monotonic() - started:.0f} s in all; results in {RESULTS}")
    failed = [
        o
        for o in outcomes
        if o.lost
        or "error" in o.extra
        or o.extra.get("memory_flat") is False
        or o.extra.get("acked_message_ids_not_delivered")
    ]
    if failed:
        print("chaos: FAILED: " + ", ".join(o.scenario for o in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
