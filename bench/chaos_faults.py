"""Process and network faults under steady load: kills, dropped and frozen connections, a slow consumer.

- `consumer_sigkill`: two Exclusive consumers (active + standby) under a steady 1,000 msg/s;
  the active one is SIGKILLed 50 times and restarted as the new standby each time.
- `broker_sigkill`: the embedded broker is `kill -9`ed and restarted 10 times under load.
- `proxy_drop` / `proxy_freeze`: a TCP proxy between the services and the broker resets every
  connection, or black-holes it (half-open); the WebSocket heartbeat must find the dead
  connection and the services reconnect. Detection time is measured at the proxy.
- `slow_consumer`: a consumer that handles 50 msg/s under 1,000 msg/s: memory of the broker and
  the consumer must stay flat (backpressure), then it drains the backlog without loss.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

from bench.chaos_common import (
    FAST_RECOVERY,
    QUICK,
    Ledger,
    Outcome,
    RssSampler,
    delivered_again,
    seqs_of,
    settle,
    start_producer,
    wait_receiving,
)
from bench.chaos_proxy import FaultProxy
from harness import Cluster, active_and_standby, is_busy_warning, is_event, log_time, until

CONSUMER_KILLS = 5 if QUICK else 50
BROKER_KILLS = 3 if QUICK else 10
PROXY_FAULTS = 2 if QUICK else 5  # of each kind
SLOW_SECONDS = 10.0 if QUICK else 40.0


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
