"""Figures of the real service processes (`python -m broker|producer|consumer`).

- takeover: SIGKILL of the active Exclusive consumer until the standby handles its first message,
- resources: peak RSS and CPU of each process at a fixed publish rate, sampled from /proc,
- readiness: process start to the first 200 of `/readyz` (the broker: its health endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench.stats import summary
from harness import Cluster, Service, cpu_seconds, free_port, log_time, rss_mb, status_mb


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory since start in MB (/proc/PID/status VmHWM)."""
    return status_mb(pid, "VmHWM")


async def wait_role(svc: Service, wanted: str, timeout: float = 20.0) -> None:
    await svc.wait_http(
        "/status", lambda s, b: s == 200 and isinstance(b, dict) and b["role"] == wanted, timeout
    )


@contextlib.asynccontextmanager
async def phase(cluster: Cluster) -> AsyncIterator[None]:
    """Stop (and forget) every service started inside the block; the broker stays."""
    before = list(cluster.services)
    try:
        yield
    finally:
        added = [svc for svc in cluster.services if svc not in before]
        await asyncio.gather(*(svc.stop() for svc in added), return_exceptions=True)
        cluster.services[:] = [svc for svc in cluster.services if svc not in added]


async def start_quiet(cluster: Cluster, name: str, module: str, **env: str) -> Service:
    """A producer or consumer at LOG_LEVEL=warning (no `listening` line to await): ready by /readyz."""
    env = {"HTTP_PORT": str(free_port()), "LOG_LEVEL": "warning", **cluster.stream_env, **env}
    if module == "consumer":
        env.setdefault("CONSUMER_NAME", name)
    svc = cluster.add(name, module, **env)
    await svc.start()
    await svc.wait_http("/readyz", lambda s, _: s == 200)
    return svc


# -- takeover ----------------------------------------------------------------------------------------


async def takeover(cluster: Cluster, trials: int, standby_retry: str | None) -> dict[str, Any]:
    """Kill the active consumer `trials` times; each time start a fresh standby for the next trial.

    A producer service publishes 200 messages/s throughout, so the standby always has messages
    to handle. The time is from just before the SIGKILL to the timestamp of the standby's first
    `received` log line after its `took over the subscription` line.
    """
    retry_env = {"STREAM_NAME": "bench-takeover"}
    if standby_retry:
        retry_env["STANDBY_RETRY_SECONDS"] = standby_retry
    await start_quiet(
        cluster,
        "takeover-producer",
        "producer",
        PUBLISH_INTERVAL_SECONDS="0.005",
        STREAM_NAME="bench-takeover",
    )
    active = await cluster.start_consumer("takeover-c0", **retry_env)
    await wait_role(active, "active")
    standby = await cluster.start_consumer("takeover-c1", **retry_env)
    await wait_role(standby, "standby")
    samples: list[float] = []
    to_first_takeover_line: list[float] = []
    for trial in range(trials):
        # A random phase against the standby's retry timer, as a real crash would have.
        await asyncio.sleep(random.uniform(0.2, 1.2))
        mark = len(standby.lines)
        killed_at = time.time()
        active.signal(signal.SIGKILL)
        took = await standby.wait_for(lambda line: line.get("event") == "took_over", 15, mark)
        first = await standby.wait_for(
            lambda line: line.get("event") == "received", 15, standby.lines.index(took, mark)
        )
        samples.append(log_time(first) - killed_at)
        to_first_takeover_line.append(log_time(took) - killed_at)
        await active.wait_exit(10)
        active = standby
        standby = await cluster.start_consumer(f"takeover-c{trial + 2}", **retry_env)
        await wait_role(standby, "standby")
    out: dict[str, Any] = {
        "trials": trials,
        "standby_retry_seconds": float(standby_retry) if standby_retry else 1.0,
        "standby_retry_is_default": standby_retry is None,
        "seconds": summary(samples),
        "took_over_line_seconds": summary(to_first_takeover_line),
        "samples_s": [round(s, 4) for s in samples],
    }
    return out


# -- resources ---------------------------------------------------------------------------------------


async def resources(cluster: Cluster, broker_pid: int | None, seconds: float) -> dict[str, Any]:
    """Producer at 1,000 msg/s and a consumer; peak RSS and CPU of each process over `seconds`."""
    stream = {"STREAM_NAME": "bench-resources"}
    consumer = await start_quiet(cluster, "resources-consumer", "consumer", LOG_PAYLOADS="false", **stream)
    producer = await start_quiet(
        cluster, "resources-producer", "producer", PUBLISH_INTERVAL_SECONDS="0.001", **stream
    )
    procs: dict[str, int] = {}
    if broker_pid is not None:
        procs["broker"] = broker_pid
    assert producer.proc is not None and consumer.proc is not None
    procs["producer"] = producer.proc.pid
    procs["consumer"] = consumer.proc.pid
    await asyncio.sleep(min(2.0, seconds / 3))  # warm-up
    start_cpu = {name: cpu_seconds(pid) for name, pid in procs.items()}
    received0 = (await consumer.get_json("/status"))[1]["counters"]["received"]
    t0 = time.monotonic()
    peak_sampled = dict.fromkeys(procs, 0.0)
    while time.monotonic() - t0 < seconds:
        for name, pid in procs.items():
            peak_sampled[name] = max(peak_sampled[name], rss_mb(pid))
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - t0
    received1 = (await consumer.get_json("/status"))[1]["counters"]["received"]
    out: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "publish_interval_seconds": 0.001,
        "consumed_msgs_per_s": round((received1 - received0) / elapsed),
    }
    for name, pid in procs.items():
        hwm = peak_rss_mb(pid)
        out[name] = {
            "rss_mb_max": round(max(peak_sampled[name], hwm), 1),
            "rss_mb_max_sampled": round(peak_sampled[name], 1),
            "cpu_percent": round((cpu_seconds(pid) - start_cpu[name]) / elapsed * 100, 1),
        }
    await asyncio.gather(producer.stop(), consumer.stop())
    return out


# -- readiness ---------------------------------------------------------------------------------------


async def _first_200(svc: Service, path: str, timeout: float = 20.0) -> float:
    """Seconds from the process start to the first 200 of `path`, polled every 10 ms."""
    deadline = time.monotonic() + timeout
    client_timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(svc.url + path) as response:
                    if response.status == 200:
                        return time.monotonic() - svc.started_at
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if svc.proc is not None and svc.proc.returncode is not None:
                raise RuntimeError(f"{svc.name} exited ({svc.proc.returncode}) before it was ready")
            await asyncio.sleep(0.01)
    raise TimeoutError(f"{svc.name}{path} not 200 within {timeout:.0f} s")


async def readiness(cluster: Cluster, trials: int, with_broker: bool) -> dict[str, Any]:
    """Start each service `trials` times; the worst start-to-ready time per service."""
    times: dict[str, list[float]] = {"producer": [], "consumer": []}
    if with_broker:
        times["broker"] = []
        for _ in range(trials):
            assert cluster.broker is not None
            await cluster.broker.stop()
            await cluster.broker.start()
            times["broker"].append(await _first_200(cluster.broker, "/admin/v2/brokers/health"))
    for trial in range(trials):
        for name, module in (("producer", "producer"), ("consumer", "consumer")):
            env = {
                "HTTP_PORT": str(free_port()),
                "LOG_LEVEL": "warning",
                **cluster.stream_env,
                "STREAM_NAME": "bench-ready",
            }
            if module == "producer":
                env["PUBLISH_INTERVAL_SECONDS"] = "1"
            else:
                env["CONSUMER_NAME"] = f"ready-{trial}"
                env["SUBSCRIPTION_NAME"] = f"ready-sub-{trial}"
            svc = cluster.add(f"ready-{name}-{trial}", module, **env)
            await svc.start()
            try:
                times[name].append(await _first_200(svc, "/readyz"))
            finally:
                await svc.stop()
                cluster.services.remove(svc)
    return {name: {"max": round(max(v), 3), "samples": [round(x, 3) for x in v]} for name, v in times.items()}
