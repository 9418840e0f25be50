"""`poison`: messages that make the handler fail, or carry malformed properties, among good ones.

10,000 messages are injected, half through the producer's `POST /messages` and half straight
to the broker with the library's `Producer`, while the producer service publishes its own
periodic messages. Interleaved among them:

- a few hundred *poison* messages carrying the consumer's `FAIL_ON_PROPERTY` property: the
  handler raises on each, the consumer retries it in place (Exclusive) `MAX_DELIVERY_ATTEMPTS`
  times and then publishes it to the dead-letter stream before acknowledging it; some of them
  are published twice (a client that retried), so they must be dead-lettered twice;
- a few hundred messages with malformed or forged properties (the crashes of the 2026-11-29
  review): seq "²", a 5,000-digit seq, sent_at "¹²", 400 nines, odd producer ids, a huge seq
  forged under the periodic producer's real id, ... They must be handled (logged, counted as
  malformed, acknowledged), never dead-lettered and never fatal.

Exclusive subscription with a standby; the active consumer is SIGKILLed twice while it works
through poison: once between two attempts at a poison message, once right after a last attempt
(while it dead-letters). Each killed consumer restarts as the new standby.

Accounting is by message id (what the broker answered for each publish): every published
message must be received (logged `received`) or, if poison, be in the dead-letter stream,
read back from `earliest` with the library's `Reader`. Copies beyond one per publish are
duplicates (a kill between the dead-letter publish and the ack), counted, never losses.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from streampair.admin import StreamAdmin
from streampair.config import ClientConfig
from streampair.connection import Connector
from streampair.consumer import Reader
from streampair.message import Message
from streampair.producer import Producer

from bench.chaos_common import FAST_RECOVERY, PRODUCER_ID, QUICK, Outcome, RssSampler, start_producer
from harness import Cluster, Service, is_busy_warning, is_event, log_time, until

POISON_PROPERTY = "chaos_poison"
INJECTOR_ID = "chaos-injector"
INJECTED = 2_000 if QUICK else 10_000
POISONED = 60 if QUICK else 240
MALFORMED_EVERY = 25  # one injected message in 25 has malformed or forged properties
REPOISONED_EVERY = 20  # one poison message in 20 is published a second time
MAX_ATTEMPTS = 3
KILLS = 2
#: The README's memory target for a service; forged producer ids and seqs must not move it.
CONSUMER_RSS_BOUND_MB = 80.0

#: What the consumer adds to a dead-letter copy (streampair.processing).
DEAD_LETTER_PROPERTIES = {
    "REAL_TOPIC",
    "ORIGIN_MESSAGE_ID",
    "DELIVERY_ATTEMPTS",
    "ERROR_CLASS",
    "ERROR_MESSAGE",
}

CONSUMER_ENV = {
    **FAST_RECOVERY,
    "STANDBY_RETRY_SECONDS": "0.2",
    "LOG_PAYLOADS": "true",
    "FAIL_ON_PROPERTY": POISON_PROPERTY,
    "MAX_DELIVERY_ATTEMPTS": str(MAX_ATTEMPTS),
    "RETRY_DELAY_SECONDS": "0.05",
    "RETRY_MAX_DELAY_SECONDS": "0.5",
}

# What the review threw at the consumer, and a few more of the same family.
MALFORMED: dict[str, dict[str, str]] = {
    "seq_superscript": {"seq": "²"},
    "seq_5000_digits": {"seq": "9" * 5000},
    "seq_negative": {"seq": "-1"},
    "seq_exponent": {"seq": "1e3"},
    "seq_padded": {"seq": " 7 "},
    "sent_at_superscript": {"sent_at": "¹²"},
    "sent_at_400_nines": {"sent_at": "9" * 400},
    "sent_at_far_future": {"sent_at": "99999999999999"},
    "producer_id_odd": {"producer_id": "évil \u202e\x00 producer\n\x1b[31m"},
    "producer_id_too_long": {"producer_id": "p" * 101},
    "producer_id_empty": {"producer_id": ""},
    "forged_huge_seq_real_producer": {"producer_id": PRODUCER_ID, "seq": "99999999"},
    "forged_max_seq": {"producer_id": INJECTOR_ID, "seq": "999999999999999999"},
}


@dataclass(frozen=True)
class Spec:
    """One message to inject; `chaos_id` names it in every log line and dead-letter copy."""

    chaos_id: int
    kind: str  # "good", "poison", "poison_malformed" or a key of MALFORMED
    route: str  # "http" (POST /messages) or "broker" (library Producer)
    properties: dict[str, str]

    @property
    def poison(self) -> bool:
        return self.kind.startswith("poison")

    @property
    def payload(self) -> str:
        return f"chaos message {self.chaos_id} ({self.kind})"


def plan(rng: random.Random) -> list[Spec]:
    """The injected messages in publishing order; a few poison ones appear twice."""
    poison_at = set(rng.sample(range(1, INJECTED + 1), POISONED))
    variants = list(MALFORMED)
    specs: list[Spec] = []
    for i in range(1, INJECTED + 1):
        props = {"chaos_id": str(i), "producer_id": INJECTOR_ID, "seq": str(i)}
        props["sent_at"] = str(int(time.time() * 1000))
        if i in poison_at:
            kind = "poison_malformed" if len(specs) % 7 == 0 else "poison"
            props[POISON_PROPERTY] = "1"
            if kind == "poison_malformed":
                props["seq"] = "²"
        elif i % MALFORMED_EVERY == 0:
            kind = variants[(i // MALFORMED_EVERY) % len(variants)]
            props.update(MALFORMED[kind])
        else:
            kind = "good"
        specs.append(Spec(i, kind, "http" if i % 2 else "broker", props))
    again = [s for s in specs if s.poison][::REPOISONED_EVERY]
    for spec in again:  # the second copy goes the other way, somewhat later
        other = "broker" if spec.route == "http" else "http"
        specs.insert(min(len(specs), specs.index(spec) + rng.randint(5, 200)), replace(spec, route=other))
    return specs


class Injector:
    """Publishes specs through both routes; remembers the message id the broker gave each."""

    def __init__(self, producer_url: str, broker_url: str, stream: str) -> None:
        self.producer_url = producer_url
        self.connector = Connector(ClientConfig(url=broker_url, stream=stream))
        self.producer = Producer(self.connector)
        self.published: dict[str, Spec] = {}  # message id -> what it was
        self.refused: list[tuple[int, int, str]] = []  # (chaos_id, status, body): should stay empty

    async def run(self, specs: list[Spec], batch: int = 100, pause: float = 0.05) -> None:
        await self.producer.start()
        limits = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=limits) as http:
            for start in range(0, len(specs), batch):
                chunk = specs[start : start + batch]
                await asyncio.gather(*(self._one(http, s) for s in chunk))
                await asyncio.sleep(pause)  # interleave with the periodic producer, not one burst

    async def _one(self, http: aiohttp.ClientSession, spec: Spec) -> None:
        if spec.route == "broker":
            self.published[await self.producer.send(spec.payload, spec.properties)] = spec
            return
        body = {"payload": spec.payload, "properties": spec.properties}
        async with http.post(f"{self.producer_url}/messages", json=body) as answer:
            text = await answer.text()
            if answer.status == 201:
                self.published[str((await answer.json())["messageId"])] = spec
            else:
                self.refused.append((spec.chaos_id, answer.status, text[:200]))

    async def close(self) -> None:
        await self.producer.close()
        await self.connector.close()


class History:
    """Every log line of every incarnation of the consumers (a restart clears a Service's lines)."""

    def __init__(self, consumers: list[Service]) -> None:
        self.consumers = consumers
        self.archived: list[dict[str, Any]] = []

    def archive(self, svc: Service) -> None:
        self.archived.extend(svc.lines)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [*self.archived, *(line for c in self.consumers for line in c.lines)]
        return [line for line in lines if line.get("event") == name]


async def kill_during_poison(
    active: Service, standby: Service, history: History, out: Outcome
) -> list[float]:
    """SIGKILL the active consumer twice while it works through poison; restart it as standby."""
    takeovers: list[float] = []
    # First between attempt 2 and 3 of a poison message (a retry in place is cut short), then
    # right after a last attempt (the kill lands while it dead-letters and acks).
    for number, attempt in enumerate((2, MAX_ATTEMPTS), start=1):
        await until(lambda n=number: len(history.events("dead_lettered")) >= POISONED * n // (KILLS + 1), 120)
        await active.wait_for(
            lambda line, a=attempt: line.get("event") == "handler_failed" and line.get("attempt") == a,
            timeout=60,
            start=len(active.lines),
        )
        marker = len(standby.lines)
        killed_at = time.time()
        active.signal(signal.SIGKILL)
        took = await standby.wait_for(is_event("took_over"), timeout=30, start=marker)
        takeovers.append(log_time(took) - killed_at)
        out.check(f"kill_{number}_exit_was_sigkill", await active.wait_exit(10) == -signal.SIGKILL)
        history.archive(active)
        await active.start()
        await active.wait_for(is_busy_warning, timeout=30)
        active, standby = standby, active
    return takeovers


async def read_dead_letters(broker_url: str, stream: str, timeout: float = 60.0) -> list[Message]:
    """Every message of the dead-letter stream, from the earliest: as many as the broker holds."""
    connector = Connector(ClientConfig(url=broker_url, stream=stream))
    try:
        stats = await StreamAdmin(connector).stats()
        expected = int(stats.get("retainedMessages", 0))  # a stream nobody subscribes to keeps all
        copies: list[Message] = []
        if expected == 0:
            return copies
        reader = Reader(connector, "earliest")
        try:
            async with asyncio.timeout(timeout):
                async for message in reader:
                    copies.append(message)
                    if len(copies) >= expected:
                        break
        finally:
            await reader.close()
        return copies
    finally:
        await connector.close()


async def drained(broker_url: str, stream: str, subscription: str) -> bool:
    """True when the subscription has nothing left: no backlog, nothing delivered and unacked."""
    connector = Connector(ClientConfig(url=broker_url, stream=stream))
    try:
        sub = (await StreamAdmin(connector).stats()).get("subscriptions", {}).get(subscription, {})
        return sub.get("msgBacklog") == 0 and sub.get("unackedMessages") == 0
    finally:
        await connector.close()


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll an asynchronous condition (broker stats have no event to wait on); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def poison(cluster: Cluster) -> Outcome:
    out = Outcome("poison")
    await cluster.start_broker()
    c1 = await cluster.start_consumer("consumer-1", **CONSUMER_ENV)
    await c1.wait_for(is_event("subscribed"))
    c2 = await cluster.start_consumer("consumer-2", **CONSUMER_ENV)
    await c2.wait_for(is_busy_warning)
    _, status = await c1.get_json("/status")
    dead_letter_stream = str(status["dead_letter_stream"])
    stream, subscription = str(status["stream"]), str(status["subscription"])
    broker_url = cluster.stream_env["STREAM_URL"]
    history = History([c1, c2])
    specs = plan(random.Random(20261129))
    with RssSampler(cluster) as rss:
        producer = await start_producer(cluster, PUBLISH_INTERVAL_SECONDS="0.01")  # 100 msg/s
        injector = Injector(producer.url, broker_url, stream)
        killer = asyncio.create_task(kill_during_poison(c1, c2, history, out))
        try:
            await injector.run(specs)
            takeovers = await killer
        finally:
            killer.cancel()
            await injector.close()
        await producer.stop()
        periodic = {str(line["message_id"]): int(line["seq"]) for line in producer.events("published")}
        poison_ids = {i for i, s in injector.published.items() if s.poison}
        good_ids = (set(injector.published) - poison_ids) | set(periodic)

        def received_ids() -> list[str]:
            return [str(line.get("message_id")) for line in history.events("received")]

        # Done when every good message was received and the subscription holds nothing more
        # (in order: every poison message before the last one was dead-lettered or is unacked).
        async def settled() -> bool:
            return not good_ids - set(received_ids()) and await drained(broker_url, stream, subscription)

        out.check("settled_within_120s", await eventually(settled, 120))
        copies = await read_dead_letters(broker_url, dead_letter_stream)
        rss.sample()
        alive = [c.proc is not None and c.proc.returncode is None for c in (c1, c2)]
        counters = [(await c.get_json("/status"))[1]["counters"] for c in (c1, c2)]

    got = received_ids()
    origins = [m.properties.get("ORIGIN_MESSAGE_ID", "") for m in copies]
    missing_good = good_ids - set(got)
    missing_poison = poison_ids - set(origins)
    out.published = len(injector.published) + len(periodic)
    out.lost = len(missing_good) + len(missing_poison)
    out.received = out.published - out.lost
    receipt_duplicates = len(got) - len(set(got))
    dead_letter_duplicates = len(origins) - len(set(origins))
    out.duplicates = receipt_duplicates + dead_letter_duplicates
    out.max_takeover_s = round(max(takeovers), 3)
    out.peak_rss_mb = max(rss.peak("consumer-1"), rss.peak("consumer-2"))
    wrong_copies = [m for m in copies if not faithful_copy(m, injector.published, stream)]
    kinds: dict[str, int] = {}
    for spec in injector.published.values():
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    out.check("every_injected_message_accepted", not injector.refused)
    out.check("only_poison_dead_lettered", set(origins) <= poison_ids)
    out.check("dead_letter_copies_faithful", not wrong_copies)
    out.check("no_crash_loop", all(alive) and len(takeovers) == KILLS)
    out.check("consumer_rss_within_bound", out.peak_rss_mb < CONSUMER_RSS_BOUND_MB)
    out.extra.update(
        injected=len(injector.published),
        periodic=len(periodic),
        periodic_received=len(set(periodic) & set(got)),
        poison_published=len(poison_ids),
        poison_distinct_messages=len({injector.published[i].chaos_id for i in poison_ids}),
        malformed_published=sum(n for k, n in kinds.items() if k in MALFORMED),
        kinds=kinds,
        dead_letter_stream=dead_letter_stream,
        dead_letter_copies=len(copies),
        dead_letter_duplicates=dead_letter_duplicates,
        receipt_duplicates=receipt_duplicates,
        kills=len(takeovers),
        consumer_restarts=len(takeovers),
        takeover_s=[round(t, 3) for t in takeovers],
        consumer_rss_bound_mb=CONSUMER_RSS_BOUND_MB,
        peak_rss_mb_by_process={n: round(rss.peak(n), 1) for n in rss.samples},
        handler_failed_lines=len(history.events("handler_failed")),
        dead_lettered_lines=len(history.events("dead_lettered")),
        surviving_consumer_counters=counters,
        settings={k: v for k, v in CONSUMER_ENV.items() if k != "LOG_PAYLOADS"},
    )
    if missing_good or missing_poison:
        out.extra["lost_examples"] = sorted(
            str(injector.published[i].chaos_id) if i in injector.published else f"seq {periodic[i]}"
            for i in list(missing_good | missing_poison)[:20]
        )
    if injector.refused:
        out.extra["refused_examples"] = injector.refused[:5]
    if wrong_copies:
        out.extra["wrong_copy_examples"] = [dict(m.properties) for m in wrong_copies[:3]]
    return out


def faithful_copy(copy: Message, published: dict[str, Spec], stream: str) -> bool:
    """The dead-letter copy carries the original payload and properties, and says why and whence."""
    props = copy.properties
    spec = published.get(props.get("ORIGIN_MESSAGE_ID", ""))
    if spec is None:
        return False
    original = {k: v for k, v in props.items() if k not in DEAD_LETTER_PROPERTIES}
    return (
        copy.text() == spec.payload
        and original == spec.properties
        and props.get("DELIVERY_ATTEMPTS") == str(MAX_ATTEMPTS)
        and props.get("ERROR_CLASS") == "SimulatedFailure"
        and POISON_PROPERTY in props.get("ERROR_MESSAGE", "")
        and props.get("REAL_TOPIC", "").endswith(f"/{stream}")
    )
