"""Throughput and latency workloads: worker processes (bench.worker) driven from here.

Each workload uses a fresh topic and subscription, so runs never see each other's messages.
A worker that fails or hangs is killed at its deadline and its error is recorded; the
benchmark goes on with the next figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.stats import summary
from harness import start_module


class WorkerError(RuntimeError):
    """A worker process failed, or did not finish in time."""


@dataclass(frozen=True)
class Client:
    """Which client library a workload uses, and where it connects."""

    #: "ours" (streampair, WebSocket or binary by the URL), "native" (pulsar-client, binary
    #: protocol) or "raw_ws" (a minimal WebSocket client, no library)
    name: str
    url: str  # ws://... or pulsar://... for ours, pulsar://... for native, ws://... for raw_ws

    @property
    def roles(self) -> tuple[str, str]:
        if self.name == "ours":
            return ("publish", "consume")
        return (f"{self.name}_publish", f"{self.name}_consume")


class Worker:
    """One `python -m bench.worker` process; `result()` is its final JSON answer."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self._lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._stderr = b""
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        self.proc = await start_module(
            "bench.worker",
            self.spec,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        self._pump = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        stderr = asyncio.create_task(self.proc.stderr.read())
        async for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
                if isinstance(obj, dict):
                    self._lines.put_nowait(obj)
        self._stderr = await stderr
        self._lines.put_nowait(None)

    async def next_line(self, timeout: float) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(self._lines.get(), timeout)
        except TimeoutError:
            raise WorkerError(f"{self.spec['role']} worker: no answer within {timeout:.0f} s") from None
        if line is None:
            tail = self._stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise WorkerError(f"{self.spec['role']} worker exited without an answer: {' | '.join(tail)}")
        if "error" in line:
            raise WorkerError(f"{self.spec['role']} worker: {line['error']}")
        return line

    async def result(self, timeout: float) -> dict[str, Any]:
        line = await self.next_line(timeout)
        while "result" not in line:
            line = await self.next_line(timeout)
        result: dict[str, Any] = line["result"]
        return result

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)


def _names(kind: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"bench-{kind}-{tag}", f"bench-sub-{tag}"


async def publish_throughput(client: Client, count: int, timeout: float) -> dict[str, Any]:
    """One producer, as fast as its window allows, every message acknowledged by the broker."""
    topic, _ = _names("publish")
    role, _ = client.roles
    worker = await Worker({"role": role, "url": client.url, "topic": topic, "count": count}).start()
    try:
        result = await worker.result(timeout)
    finally:
        await worker.stop()
    return {
        "msgs_per_s": round(result["msgs_per_s"]),
        "messages": count,
        "seconds": round(result["seconds"], 3),
    }


async def end_to_end(
    client: Client, count: int, timeout: float, rate: float = 0.0, warmup: int = 0
) -> dict[str, Any]:
    """A producer and a consumer (acking every message) in two processes.

    `rate` 0: as fast as possible, throughput = messages / (last receipt - first send).
    `rate` > 0: paced; latency percentiles of every message after the first `warmup`.
    """
    topic, subscription = _names("e2e")
    publish_role, consume_role = client.roles
    consumer = Worker(
        {
            "role": consume_role,
            "url": client.url,
            "topic": topic,
            "subscription": subscription,
            "count": count,
            "timeout": timeout,
            "latencies": rate > 0,
        }
    )
    producer = Worker({"role": publish_role, "url": client.url, "topic": topic, "count": count, "rate": rate})
    try:
        await consumer.start()
        await consumer.next_line(30)  # {"ready": true}: subscribed before the first message
        await producer.start()
        sent = await producer.result(timeout + 30)
        got = await consumer.result(timeout + 30)
    finally:
        await asyncio.gather(producer.stop(), consumer.stop())
    if got["received"] < count:
        raise WorkerError(f"consumer received {got['received']} of {count} messages within {timeout:.0f} s")
    seconds = got["last"] - sent["start"]
    out: dict[str, Any] = {"messages": count, "seconds": round(seconds, 3)}
    if rate > 0:
        latencies = got["latencies_ms"][warmup:]
        out["rate"] = rate
        out["achieved_rate"] = round(count / sent["seconds"])
        out["latency_ms"] = summary(latencies)
        out["samples_ms"] = latencies
    else:
        out["msgs_per_s"] = round(count / seconds)
    return out


async def latency_at_rates(
    client: Client, rates: list[int], seconds: float, timeout: float
) -> dict[str, dict[str, Any]]:
    """End-to-end latency at each fixed rate; an error at one rate does not stop the others."""
    out: dict[str, dict[str, Any]] = {}
    for rate in rates:
        count = max(int(rate * seconds), 200)
        started = time.monotonic()
        try:
            out[str(rate)] = await end_to_end(
                client, count, timeout=seconds + timeout, rate=rate, warmup=min(count // 20, rate // 2)
            )
        except WorkerError as error:
            out[str(rate)] = {"error": str(error)}
        out[str(rate)]["wall_s"] = round(time.monotonic() - started, 1)
    return out
