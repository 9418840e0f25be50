"""What Exclusive standbys cost the broker: CPU per standby at 1, 5 and 20 replicas.

One holder keeps the Exclusive subscription and acks a flow of 100 msg/s; a worker process
(`python -m bench.standby '<spec>'`) runs N standbys, each doing what the consumer service's
StandbyLoop does: `Consumer.connect()`, refused with SubscriptionBusy, again after
STANDBY_RETRY_SECONDS (1 s +- 20 %). Every standby has a connection of its own, as a replica
would (over the binary protocol each gets its own pulsar-client: the library shares one per
process and set of settings, so each standby's settings differ by a millisecond of timeout).

Broker CPU is utime + stime of the broker's process (/proc/<pid>/stat) over `seconds`.
Baselines (the holder and the flow, no standby) alternate with the runs with standbys and each
run is compared with the mean of the baselines on either side of it, so that the broker's drift
(GC, JIT, ledger rollover) cancels: per replica = (CPU% with N - baseline) / N. `fit` is the
slope of (CPU% - baseline) against N over the three runs, dominated by N = 20 where the cost
stands out of the noise (a window's CPU moves by +-1-3 % of a core on a shared 2-core machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from typing import Any

from harness import start_module

TICK = os.sysconf("SC_CLK_TCK")


# -- the worker: N standbys in one process ------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _config(spec: dict[str, Any], index: int) -> Any:
    from streampair.config import ClientConfig

    return ClientConfig(
        url=spec["url"],
        admin_url=spec.get("admin_url"),
        stream=spec["topic"],
        connect_timeout_seconds=10 + index / 1000,  # a client (connection) of its own each
    )


async def _standby(spec: dict[str, Any], index: int, counts: dict[str, int]) -> None:
    from streampair.connection import Connector
    from streampair.consumer import Consumer
    from streampair.errors import StreamError, SubscriptionBusy

    period = float(spec["period"])
    connector = Connector(_config(spec, index))
    consumer = Consumer(connector, spec["subscription"], "Exclusive")
    await asyncio.sleep(random.uniform(0, period))  # replicas do not start in lockstep
    try:
        while True:
            counts["attempts"] += 1
            try:
                await consumer.connect()
                counts["held"] += 1  # the holder is gone: not what is measured here
                await consumer.close()
                return
            except SubscriptionBusy:
                pass
            except StreamError:
                counts["errors"] += 1
            await asyncio.sleep(period * random.uniform(0.8, 1.2))
    finally:
        await connector.close()


async def worker(spec: dict[str, Any]) -> None:
    from streampair.logs import configure_logging

    # stdout carries the answers to the driver: the library's logs, errors only, must not fill it.
    configure_logging("bench-standby", "error", "json")
    counts = {"attempts": 0, "held": 0, "errors": 0}
    tasks = [asyncio.create_task(_standby(spec, i, counts)) for i in range(int(spec["replicas"]))]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cpu0 = time.process_time()
    _emit({"ready": True})
    async for line in reader:
        if line.strip() == b"report":
            _emit({**counts, "cpu_s": time.process_time() - cpu0})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the driver ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def cpu_pct(pid: int, seconds: float) -> float:
    c0, t0 = process_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (process_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


class Standbys:
    """A running worker process of N standbys."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Standbys:
        self.proc = await start_module(
            "bench.standby",
            self.spec,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert (await self.line(60)).get("ready")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                raise RuntimeError("standby worker exited")
            with contextlib.suppress(ValueError):
                obj: dict[str, Any] = json.loads(raw)
                return obj

    async def report(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"report\n")
        await self.proc.stdin.drain()
        return await self.line(10)


class Holder:
    """The active consumer (our library, the transport under test) and 100 msg/s through it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from streampair.connection import Connector

        self.connector = Connector(_config(spec, -1))
        self.spec = spec
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from streampair.consumer import Consumer
        from streampair.producer import Producer

        consumer = Consumer(self.connector, self.spec["subscription"], "Exclusive")
        await consumer.connect()
        producer = Producer(self.connector)
        await producer.start()

        async def produce() -> None:
            try:
                while True:
                    sent = await producer.send_async(b"x" * 100)
                    # fire and forget (the flow is load, not a measurement); the last ones fail
                    # SendUnconfirmed when the producer closes, which is expected, not to be logged
                    sent.add_done_callback(lambda f: f.cancelled() or f.exception())
                    await asyncio.sleep(0.01)
            finally:
                await producer.close(drain_seconds=0)

        async def consume() -> None:
            try:
                async for message in consumer:
                    await consumer.ack(message)
            finally:
                await consumer.close()

        self.tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.connector.close()


async def standby_cost(
    url: str,
    admin_url: str | None,
    broker_pid: int,
    *,
    replicas: tuple[int, ...] = (1, 5, 20),
    seconds: float = 20.0,
    warmup: float = 15.0,
    period: float = 1.0,
) -> dict[str, Any]:
    """Broker CPU per standby at each N, against alternating baselines (see the module doc)."""
    spec = {
        "url": url,
        "admin_url": admin_url,
        "topic": f"bench-standby-{uuid.uuid4().hex[:8]}",
        "subscription": "standby-sub",
        "period": period,
    }
    holder = Holder(spec)
    await holder.start()
    out: dict[str, Any] = {"seconds": seconds, "standby_retry_seconds": period}
    try:
        if warmup > 0:  # the broker's refusal path, compiled before it is measured
            async with Standbys({**spec, "replicas": max(replicas)}):
                await asyncio.sleep(warmup)
        baselines = [await cpu_pct(broker_pid, seconds)]
        for n in replicas:
            async with Standbys({**spec, "replicas": n}) as standbys:
                await asyncio.sleep(period * 2)  # every standby has tried at least once
                before = await standbys.report()
                cpu = await cpu_pct(broker_pid, seconds)
                after = await standbys.report()
            baselines.append(await cpu_pct(broker_pid, seconds))
            baseline = (baselines[-2] + baselines[-1]) / 2
            out[str(n)] = {
                "broker_cpu_pct": round(cpu, 2),
                "baseline_cpu_pct": round(baseline, 2),
                "cpu_pct_per_replica": round((cpu - baseline) / n, 3),
                "attempts_per_s": round((after["attempts"] - before["attempts"]) / seconds, 2),
                "errors": after["errors"],
                "client_cpu_pct_per_replica": round(
                    100 * (after["cpu_s"] - before["cpu_s"]) / seconds / n, 3
                ),
            }
        out["baselines_cpu_pct"] = [round(b, 2) for b in baselines]
        points = [(n, out[str(n)]["cpu_pct_per_replica"] * n) for n in replicas]
        out["fit"] = round(sum(n * d for n, d in points) / sum(n * n for n, _ in points), 3)
    finally:
        await holder.stop()
    return out


if __name__ == "__main__":
    asyncio.run(worker(json.loads(sys.argv[1])))
