"""`hostile_http`: the adversarial requests of the 2026-11-29 review against the producer's API.

A broker, the producer (publishing every 20 ms) and an Exclusive consumer with a standby. While
the producer publishes, its `POST /messages` gets:

- single bad requests, each with its documented answer (services/producer/openapi.yaml): lone
  surrogates in the payload, key, a property name or value (422), text/plain (415), NaN and
  Infinity, bytes that are not UTF-8, deep nesting, a body that is not an object (400), bad
  fields (422), giant bodies with a length or chunked, and a body whose frame would exceed
  the broker's limit (413), a gzip bomb (400: bodies are not inflated), request lines and
  headers over 8 KiB and broken Content-Lengths (400), a wrong method (405);
- slow clients: slowloris heads (a header line every 2 s: closed at the head deadline, no
  answer) and half bodies (408 at the body deadline);
- 1,000 lone-surrogate requests at once while legitimate POSTs are timed;
- forged `producer_id`/`seq`: 70 invented producer ids, each with seq 1, a jump of 100,000 and
  one of 10^11, and a huge seq under the producer's real id (the review grew the consumer to
  267 MB and blinded the latency alert with these).

Checks: every answer is the expected documented 4xx with a JSON `{"error", "status"}` body,
never a 500, none later than its deadline; the legitimate POSTs stay fast; periodic publishing
never stalls; no genuine message counted as a duplicate after the forgery and latencies still
measured; producer and consumer memory within bounds; every process alive; nothing lost.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

import aiohttp

from bench.chaos_common import FAST_RECOVERY, Outcome, RssSampler, start_producer
from bench.chaos_http import (
    DEADLINE_S,
    FLOOD,
    FORGED_PRODUCERS,
    flood_with_legit,
    forge,
    single_attacks,
    slow_attacks,
)
from harness import Cluster, Service, cpu_seconds, is_busy_warning, is_event, log_time, until

PUBLISH_INTERVAL = 0.02
# Bounds: memory as the README's target for a service plus room for 1,000 open connections.
# A legitimate POST and the periodic publisher may wait while the producer's one event loop
# answers the flood (under a CPU second for 1,000 connections on the 2-core machine), never
# for a send timeout: the review saw a legitimate POST take 27 s and publishing stall 30 s.
RSS_BOUND_MB = 100.0
LEGIT_LATENCY_BOUND_S = 2.0
STALL_BOUND_S = 2.0


def latency_count(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("streampair_end_to_end_latency_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def longest_gap(producer: Service, start: float, end: float) -> float:
    """Longest time between two periodic publishes in [start, end] (wall clock)."""
    times = [log_time(line) for line in producer.events("published")]
    window = [t for t in times if start <= t <= end]
    return max((b - a for a, b in itertools.pairwise(window)), default=float("inf"))


# -- scenario --------------------------------------------------------------------------------


async def hostile_http(cluster: Cluster) -> Outcome:
    out = Outcome("hostile_http")
    await cluster.start_broker()
    env = {**FAST_RECOVERY, "STANDBY_RETRY_SECONDS": "0.2", "LOG_PAYLOADS": "true"}
    c1 = await cluster.start_consumer("consumer-1", **env)
    await c1.wait_for(is_event("subscribed"))
    c2 = await cluster.start_consumer("consumer-2", **env)
    await c2.wait_for(is_busy_warning)
    posted: dict[str, str] = {}  # message id -> what it was, for every POST answered 201
    with RssSampler(cluster) as rss:
        producer = await start_producer(cluster, PUBLISH_INTERVAL_SECONDS=str(PUBLISH_INTERVAL))
        await c1.wait_for(is_event("received"))
        port = producer.http_port
        started = time.time()
        slow = asyncio.create_task(slow_attacks(port))
        async with aiohttp.ClientSession() as session:
            loop_check: dict[str, float] = {}
            singles = await single_attacks(session, producer.url, port, loop_check)
            cpu0 = cpu_seconds(producer.proc.pid) if producer.proc else 0.0
            flood, legit = await flood_with_legit(port, posted)
            flood_cpu = (cpu_seconds(producer.proc.pid) if producer.proc else 0.0) - cpu0
            _, status = await producer.get_json("/status")
            forged_refused = await forge(session, producer.url, str(status["producer_id"]), posted)
            latencies_before = latency_count(await text_of(session, c1.url + "/metrics"))
            slows = await slow
            ended = time.time()
            # A few seconds more of genuine messages after the forgery: timed, not duplicates.
            await producer.wait_for(is_event("published"), start=len(producer.lines) + 100, timeout=30)
            latencies_after = latency_count(await text_of(session, c1.url + "/metrics"))
            _, consumer_status = await c1.get_json("/status")
            alive = {s.name: s.proc is not None and s.proc.returncode is None for s in cluster.services}
            livez = {s.name: (await s.get_json("/livez"))[0] for s in (producer, c1, c2)}
        gap = longest_gap(producer, started, ended)
        await producer.stop()
        periodic = {str(line["message_id"]) for line in producer.events("published")}
        expected = periodic | set(posted)
        got: set[str] = set()

        def complete() -> bool:
            nonlocal got
            got = {str(line.get("message_id")) for c in (c1, c2) for line in c.events("received")}
            return not expected - got

        await until(complete, 60)
        rss.sample()

    exchanges = [*singles, *slows, *flood]
    wrong = [ex for ex in exchanges if not ex.ok]
    statuses: dict[str, int] = {}
    for ex in exchanges:
        key = str(ex.status) if ex.outcome == "answered" else ex.outcome
        statuses[key] = statuses.get(key, 0) + 1
    out.published, out.lost = len(expected), len(expected - got)
    out.received = out.published - out.lost
    out.peak_rss_mb = max(rss.peak(n) for n in ("producer", "consumer-1", "consumer-2"))
    errors_500 = len(producer.events("http_handler_failed"))
    out.check("every_answer_documented_json_4xx", not wrong)
    out.check("no_500", errors_500 == 0 and "500" not in statuses)
    out.check("no_answer_later_than_its_deadline", all(ex.seconds <= DEADLINE_S for ex in exchanges))
    out.check(
        "legit_posts_during_flood_fast",
        not legit.refused and bool(legit.during_flood) and max(legit.during_flood) < LEGIT_LATENCY_BOUND_S,
    )
    out.check("periodic_publishing_never_stalls", gap < STALL_BOUND_S)
    out.check("gzip_bomb_does_not_stall_the_loop", loop_check["livez_after_gzip_bomb_s"] < 0.5)
    out.check("forged_posts_accepted", forged_refused == 0)
    out.check("no_duplicates_after_forgery", consumer_status["counters"]["duplicates"] == 0)
    out.check("latency_still_measured_after_forgery", latencies_after > latencies_before)
    out.check("rss_within_bound", out.peak_rss_mb < RSS_BOUND_MB)
    out.check("nothing_died", all(alive.values()) and set(livez.values()) == {200})
    out.extra.update(
        requests=len(exchanges),
        answers_by_status=statuses,
        flood=FLOOD,
        flood_max_s=round(max(ex.seconds for ex in flood), 3),
        legit_posts=legit.all_answers,
        legit_posts_during_flood=len(legit.during_flood),
        legit_post_during_flood_max_s=round(max(legit.during_flood, default=0.0), 3),
        legit_post_during_flood_median_s=round(statistics.median(legit.during_flood or [0.0]), 3),
        periodic_longest_gap_s=round(gap, 3),
        livez_after_gzip_bomb_s=round(loop_check["livez_after_gzip_bomb_s"], 3),
        flood_producer_cpu_s=round(flood_cpu, 2),
        publish_interval_s=PUBLISH_INTERVAL,
        forged_producer_ids=FORGED_PRODUCERS,
        consumer_counters_after_forgery=consumer_status["counters"],
        slow_clients={
            ex.name: f"{ex.outcome} {ex.status or ''} after {ex.seconds:.1f} s".strip() for ex in slows
        },
        single_attacks={ex.name: ex.status if ex.outcome == "answered" else ex.outcome for ex in singles},
        rss_bound_mb=RSS_BOUND_MB,
        peak_rss_mb_by_process={n: round(rss.peak(n), 1) for n in rss.samples},
        client_error_log_lines=len(producer.events("http_client_error")),
    )
    if wrong:
        out.extra["wrong_answers"] = [ex.summary() for ex in wrong[:10]]
    if not all(alive.values()):
        out.extra["dead"] = [n for n, ok in alive.items() if not ok]
    return out


async def text_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as answer:
        return await answer.text()
