"""Chaos scenario `token_rotation` (issue #19): tokens rotated three times while 1,000 msg/s flow.

The embedded broker with roles and TLS (`harness.secured`): the producer's role may produce, the
consumers' role may consume; two Exclusive consumers (one active, one standby) and the producer
read their tokens from files, behind a TCP proxy. Each rotation, as a Kubernetes Secret is
rotated: new tokens are written (atomically) into the files, then the old ones are made useless,
and then every connection is dropped at the proxy, so every reconnect, the standby's retries and
the takeover by whichever consumer wins must present the new token. Nothing may be lost, and no
attempt may be refused (a refusal would mean a stale token was presented).

"Useless": each generation of tokens names roles of its own (`chaos-producer-2`...), and the
previous generation's grants are revoked once the new tokens are in the files. (Letting them
expire instead cannot prove it: the files must never hold an expired token, or the standby, which
retries every 0.2 s, would present one; so the old tokens would still be valid at the drop.) Every
token also expires, ROTATION_SECONDS * 3 after it was written.

Kept in a module of its own (bench/chaos.py is being split by theme); it needs only the harness and
the suite's `Outcome` type, which bench/chaos.py passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bench.chaos_proxy import FaultProxy
from harness import Cluster, Service, is_busy_warning, is_event, log_time, published_seqs, received_seqs
from harness.secured import SecuredBroker, start_embedded

ROTATIONS = 3
#: Traffic between rotations; every token expires three periods after it is written.
ROTATION_SECONDS = 4.0
#: Between writing the new tokens and revoking the old roles: an attempt that read the file just
#: before the write has long finished (a loopback handshake takes milliseconds).
SETTLE_SECONDS = 1.0
PRODUCER_ID = "chaos-tokens"


class OutcomeLike(Protocol):
    published: int
    received: int
    lost: int
    duplicates: int
    max_takeover_s: float | None
    peak_rss_mb: float
    extra: dict[str, Any]


OutcomeT = TypeVar("OutcomeT", bound=OutcomeLike)


def write_token(path: Path, token: str) -> None:
    """Replace the file in one step, as kubelet swaps a projected Secret's files."""
    temporary = path.with_suffix(".new")
    temporary.write_text(token + "\n")
    temporary.replace(path)


class Rotation:
    """The token files of the producer and the consumers, and the generation of roles in them."""

    def __init__(self, broker: SecuredBroker, directory: Path) -> None:
        self.broker = broker
        self.files = {kind: directory / f"{kind}.token" for kind in ("producer", "consumer")}
        self.generation = 0

    def roles(self, generation: int) -> dict[str, str]:
        return {kind: f"chaos-{kind}-{generation}" for kind in self.files}

    async def rotate(self) -> None:
        """Grant the next generation's roles, write their tokens, then revoke the previous roles."""
        self.generation += 1
        roles = self.roles(self.generation)
        await self.broker.grant(roles["producer"], ["produce"])
        await self.broker.grant(roles["consumer"], ["consume"])
        for kind, role in roles.items():
            write_token(self.files[kind], self.broker.token(role, expires_in=3 * ROTATION_SECONDS))
        if self.generation > 1:
            await asyncio.sleep(SETTLE_SECONDS)
            for role in self.roles(self.generation - 1).values():
                status, _ = await self.broker.admin(
                    "DELETE", f"/admin/v2/namespaces/public/default/permissions/{role}"
                )
                assert status == 204, status


async def refused_attempts(services: list[Service]) -> int:
    total = 0.0
    for svc in services:
        for label in ("unauthenticated", "forbidden"):
            total += await svc.metric("streampair_connection_attempts_total", f'result="{label}"')
    return int(total)


async def peak_rss(services: list[Service], peaks: dict[str, float]) -> None:
    while True:
        for svc in services:
            if svc.proc is not None and svc.proc.returncode is None:
                with contextlib.suppress(OSError):
                    peaks[svc.name] = max(peaks.get(svc.name, 0.0), svc.rss_mb())
        await asyncio.sleep(0.5)


async def token_rotation(cluster: Cluster, make: Callable[[str], OutcomeT]) -> OutcomeT:
    out = make("token_rotation")
    directory = cluster.data_dir
    broker, secured = await start_embedded(cluster, directory)
    rotation = Rotation(secured, directory)
    proxy = FaultProxy(int(secured.https.rsplit(":", 1)[1]))
    await proxy.start()
    fast = {
        "RECONNECT_MAX_SECONDS": "0.5",
        "LOG_LEVEL": "info",
        "STREAM_URL": f"wss://127.0.0.1:{proxy.port}",
    }
    peaks: dict[str, float] = {}
    sampler: asyncio.Task[None] | None = None
    try:
        await rotation.rotate()
        consumer_env = {**fast, "STREAM_AUTH_TOKEN_FILE": str(rotation.files["consumer"])}
        consumer_env |= {"STANDBY_RETRY_SECONDS": "0.2", "LOG_PAYLOADS": "true"}
        c1 = await cluster.start_consumer("consumer-1", **consumer_env)
        await c1.wait_for(is_event("subscribed"), timeout=30)
        c2 = await cluster.start_consumer("consumer-2", **consumer_env)
        await c2.wait_for(is_busy_warning, timeout=30)
        producer = await cluster.start_producer(
            "producer",
            **fast,
            STREAM_AUTH_TOKEN_FILE=str(rotation.files["producer"]),
            PUBLISH_INTERVAL_SECONDS="0.001",
            PRODUCER_ID=PRODUCER_ID,
        )
        services = [producer, c1, c2]
        sampler = asyncio.create_task(peak_rss([broker, *services], peaks))
        recoveries: list[float] = []
        for _ in range(ROTATIONS):
            await asyncio.sleep(ROTATION_SECONDS)  # traffic under the current tokens
            await rotation.rotate()
            marks = {svc.name: len(svc.lines) for svc in (c1, c2)}
            dropped = time.time()
            proxy.drop()  # every connection: the reconnects can only succeed with the new tokens
            recoveries.append(await first_delivery_after([c1, c2], marks) - dropped)
        refused = await refused_attempts(services)
        await producer.stop()
        published = set(published_seqs(producer))
        deadline = time.monotonic() + 90
        while True:
            got = received_seqs(c1, c2, producer_id=PRODUCER_ID)
            if published <= set(got) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        if sampler is not None:
            sampler.cancel()
        await proxy.stop()
    out.published = len(published)
    out.received = len(set(got) & published)
    out.lost = len(published - set(got))
    out.duplicates = len(got) - len(set(got))
    out.max_takeover_s = round(max(recoveries), 3)
    out.peak_rss_mb = max(peaks.values(), default=0.0)
    first_line, last_line = producer.events("published")[0], producer.events("published")[-1]
    out.extra.update(
        rotations=ROTATIONS,
        token_lifetime_s=3 * ROTATION_SECONDS,
        refused_attempts=refused,
        publish_failed=len(producer.events("publish_failed")),
        rate_msg_s=round(len(published) / max(log_time(last_line) - log_time(first_line), 1e-9)),
        note="max_takeover_s: drop of every connection (old roles revoked) to the first delivery after it",
    )
    if refused:
        out.extra["error"] = f"{refused} connection attempts were refused: a stale token was presented"
    return out


async def first_delivery_after(consumers: list[Service], marks: dict[str, int]) -> float:
    """Wall-clock time of the first delivery on a connection opened after the marks, on whichever
    consumer got the subscription (the other is refused with 409 and opens none)."""

    async def one(svc: Service) -> float:
        connected = await svc.wait_for(
            lambda line: line.get("event") == "connected" and line.get("endpoint") == "consumer",
            timeout=60,
            start=marks[svc.name],
        )
        after = svc.lines.index(connected) + 1
        return log_time(await svc.wait_for(is_event("received"), timeout=60, start=after))

    tasks = [asyncio.create_task(one(svc)) for svc in consumers]
    try:
        done, _ = await asyncio.wait(tasks, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError("no consumer received anything within 60 s of the drop")
        return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
