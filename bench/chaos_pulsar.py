"""`pulsar_sigkill`: a real Apache Pulsar standalone that the chaos suite `kill -9`s and starts again.

The scenario: the standalone (started once) is `kill -9`ed 10 times under 500 msg/s and
restarted each time on the same data and ports; one Exclusive consumer. Reported as skipped
(not failed) where Pulsar cannot run (no Java 17+, no jars and no Maven to fetch them, or the
fetch fails).

Built on `harness.pulsar.PulsarStandalone` (free loopback ports, its own cache directory
with the data, config, log and pid file; the jars are linked from `.cache/pulsar/lib`). A
restart runs `scripts/pulsar-standalone start` again on the same data directory and ports
(never `PULSAR_WIPE`) and waits for health. `close()` SIGKILLs the JVM (its data is thrown
away) and removes the directory; it is synchronous, so it also works from `finally` blocks and
at interpreter exit after Ctrl-C. The JVM runs in its own session (setsid): a Ctrl-C in the
terminal never reaches it, so it must be stopped here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from bench.chaos_common import (
    FAST_RECOVERY,
    PRODUCER_ID,
    QUICK,
    Ledger,
    Outcome,
    RssSampler,
    delivered_again,
    settle,
    start_producer,
    wait_receiving,
)
from harness import Cluster, Service, is_event
from harness.pulsar import SCRIPT, SHARED_CACHE, PulsarStandalone

T = TypeVar("T")

# Each Pulsar kill costs ~10 s (a JVM start to healthy takes 6-8 s): 10 of them fit in ~2.5 min.
PULSAR_KILLS = 2 if QUICK else 10
PULSAR_RATE_INTERVAL = "0.002"  # 500 msg/s


def unavailable() -> str | None:
    """Why a Pulsar standalone cannot be run here (java or the jars missing), or None."""
    java_home = os.environ.get("JAVA_HOME")
    java = f"{java_home}/bin/java" if java_home and os.access(f"{java_home}/bin/java", os.X_OK) else None
    java = java or shutil.which("java")
    if java is None:
        return "java not found (Apache Pulsar standalone needs Java 17+)"
    try:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{java} -version failed: {error}"
    found = re.search(r'version "(\d+)', probe.stderr + probe.stdout)
    if found is None or int(found.group(1)) < 17:
        return f"{java} is not Java 17+"
    if not (SHARED_CACHE / "lib" / ".complete").is_file() and shutil.which("mvn") is None:
        return "the Pulsar jars are not in .cache/pulsar/lib and mvn (Maven) is not installed to fetch them"
    if not SCRIPT.is_file():
        return f"{SCRIPT} is missing"
    return None


class FetchFailed(RuntimeError):
    """The jars could not be assembled (offline without a warm Maven repository, ...)."""


class ChaosPulsar:
    """One standalone, started once; `kill9()` and `restart()` as often as needed; `close()`."""

    def __init__(self) -> None:
        self.standalone = PulsarStandalone()
        self.standalone.env.pop("PULSAR_WIPE", None)  # a restart must keep the data
        self.restart_seconds: list[float] = []
        self._closed = False
        atexit.register(self.close)

    @property
    def web_port(self) -> int:
        return self.standalone.web_port

    @property
    def cache(self) -> Path:
        return self.standalone.cache

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.web_port}"

    @property
    def binary_url(self) -> str:
        return self.standalone.binary_url

    async def start(self) -> float:
        """First start (fetches the jars if needed); seconds to healthy."""
        try:
            await _finish_even_if_cancelled(asyncio.to_thread(self.standalone.start))
        except RuntimeError as error:
            if "fetch failed" in str(error):
                raise FetchFailed(" ".join(str(error).split())[:400]) from error
            raise
        return self.standalone.start_seconds

    def pid(self) -> int | None:
        """The JVM's pid while it is alive (the script's pid file names it)."""
        try:
            pid = int((self.cache / "pulsar.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def rss_mb(self) -> float | None:
        pid = self.pid()
        if pid is None:
            return None
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    async def kill9(self, timeout: float = 10.0) -> None:
        """SIGKILL the JVM and wait until it is gone and its ports are closed.

        The JVM's main thread shows as a zombie while its other threads still exit and hold the
        sockets (seen on a loaded machine): the restart then found its own web port "in use".
        """
        pid = self.pid()
        if pid is None:
            raise RuntimeError("Pulsar is not running; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        ports = (self.standalone.web_port, self.standalone.broker_port, self.standalone.bookie_port)
        deadline = time.monotonic() + timeout
        while _alive(pid) or any(_listening(port) for port in ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Pulsar JVM {pid} or its ports are still up {timeout}s after SIGKILL")
            await asyncio.sleep(0.02)

    async def restart(self) -> float:
        """`scripts/pulsar-standalone start` on the same data and ports; seconds to healthy."""
        t0 = time.monotonic()
        done = await _finish_even_if_cancelled(
            asyncio.to_thread(
                subprocess.run,
                [str(SCRIPT), "start"],
                env=self.standalone.env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        )
        took = time.monotonic() - t0
        if done.returncode != 0:
            raise self.standalone.failure("start (a restart)", done)
        self.restart_seconds.append(took)
        return took

    def close(self) -> None:
        """SIGKILL the JVM if it runs and remove the directory; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        pids = {p for p in (self.pid(), *self._jvms_of_this_cache()) if p is not None}
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.cache, ignore_errors=True)
        atexit.unregister(self.close)

    def _jvms_of_this_cache(self) -> list[int]:
        """JVMs whose command line names this instance's own (unique, temporary) config file:
        also one whose pid file a start interrupted by Ctrl-C did not get to write."""
        marker = str(self.cache / "conf" / "standalone.conf").encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found


def _listening(port: int) -> bool:
    """True while something accepts connections on 127.0.0.1:`port` (what the start script checks)."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await a thread's work; on cancellation let it finish first (so the JVM it may start
    is known to `close()`), then re-raise."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


PROTOCOLS = {"websocket": "WebSocket API", "binary": "binary protocol"}


async def pulsar_sigkill(cluster: Cluster, transport: str = "websocket") -> Outcome:
    """`transport`: the services on Pulsar's WebSocket API, or (`binary`) on its binary protocol."""
    out = Outcome("pulsar_sigkill" if transport == "websocket" else f"pulsar_sigkill_{transport}")
    reason = unavailable()
    if reason is not None:
        out.extra["skipped"] = reason
        return out
    pulsar = ChaosPulsar()
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
        except FetchFailed as error:
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
