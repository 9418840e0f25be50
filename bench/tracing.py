"""Tracing's cost: publish and end-to-end throughput with tracing on next to off, in one run.

On: `OTEL_TRACES_EXPORTER=otlp`, `OTEL_TRACES_SAMPLER=always_on`, OTLP/HTTP to a local Jaeger v2
(scripts/jaeger-local, when it is built; else an OTLP sink in this process that answers 200, and the
results say which). Off: the same code with nothing set, as the services run by default. The modes
(MODES) alternate, `trials` times each, every run against a fresh embedded broker; each figure is
the median of its trials and `tracing_publish_ratio` is on / off of the publish medians (goal >= 0.8).

Both sides run as their own processes (bench/tracing_worker.py), as the services do. Each worker
also reports its CPU per message, how many spans it made and how many its exporter delivered: a
ratio bought by dropping spans would show there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

GOAL = 0.8
Progress = Callable[[str], None]


@contextlib.asynccontextmanager
async def _otlp_sink() -> AsyncIterator[str]:
    """Where Go is missing: an OTLP/HTTP endpoint that takes every export (a collector's front door)."""
    from aiohttp import web

    from harness import serve_app

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    async with serve_app(app) as url:
        yield url


@contextlib.asynccontextmanager
async def collector() -> AsyncIterator[tuple[str, str]]:
    """(OTLP endpoint, what it is): the local Jaeger v2 when it is built, else the sink (building
    Jaeger takes minutes cold: `scripts/jaeger-local build`, which CI does)."""
    from harness import jaeger

    binary = await asyncio.to_thread(jaeger.built)
    if binary is not None:
        backend = await jaeger.JaegerLocal(binary).start()
        try:
            yield backend.otlp_endpoint, "Jaeger v2 (scripts/jaeger-local), OTLP/HTTP, in-memory store"
        finally:
            await backend.stop()
    else:
        async with _otlp_sink() as url:
            yield url, "an OTLP/HTTP sink in the bench process (Jaeger not built: scripts/jaeger-local build)"


class _Proc:
    """One worker process; its stdout carries JSON lines ({"ready"}, then {"result"} or {"error"})."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.spec, self.env = spec, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> _Proc:
        from harness import start_module

        self.proc = await start_module(
            "bench.tracing_worker",
            self.spec,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        return self

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while True:  # the library's own log lines share stdout: only our answers count
            raw = await asyncio.wait_for(self.proc.stdout.readline(), max(deadline - time.monotonic(), 0))
            if not raw:
                err = (await self.proc.stderr.read()).decode(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{self.spec['role']} worker exited: {' | '.join(err)}")
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
                if isinstance(obj, dict) and obj.keys() & {"ready", "result", "error"}:
                    break
        if "error" in obj:
            raise RuntimeError(f"{self.spec['role']} worker: {obj['error']}")
        return obj

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


#: off: nothing set. no_export: spans made and queued by the BatchSpanProcessor, then dropped (what
#: tracing costs before encoding and sending). on: the real thing, OTLP/HTTP to the collector.
#: sampled: the same with 1 trace in 100 recorded (`parentbased_traceidratio`, 0.01).
MODES = ("off", "no_export", "on", "sampled")


def _env(mode: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    if mode == "sampled":
        env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.01")
    if mode in ("on", "sampled"):
        env.setdefault("OTEL_TRACES_SAMPLER", "always_on")
        env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    return env


async def _publish_once(url: str, count: int, mode: str, endpoint: str) -> dict[str, Any]:
    topic = f"bench-tracing-{uuid.uuid4().hex[:8]}"
    spec = {"role": "publish", "url": url, "topic": topic, "count": count, "mode": mode}
    proc = await _Proc(spec, _env(mode, endpoint)).start()
    try:
        result: dict[str, Any] = (await proc.line(180))["result"]
    finally:
        await proc.stop()
    return result


async def _e2e_once(url: str, count: int, mode: str, endpoint: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-tracing-e2e-{tag}"
    env = _env(mode, endpoint)
    consume = {"role": "consume", "url": url, "topic": topic, "subscription": f"s-{tag}", "timeout": 180}
    consumer = _Proc({**consume, "count": count, "mode": mode}, env)
    producer = _Proc({"role": "publish", "url": url, "topic": topic, "count": count, "mode": mode}, env)
    try:
        await consumer.start()
        await consumer.line(30)  # ready: subscribed before the first message
        await producer.start()
        sent = (await producer.line(210))["result"]
        got = (await consumer.line(210))["result"]
    finally:
        await asyncio.gather(producer.stop(), consumer.stop())
    if got["received"] < count:
        raise RuntimeError(f"consumer received {got['received']} of {count}")
    seconds = got["last"] - sent["start"]
    out = {"msgs_per_s": count / seconds, "seconds": seconds}
    for side, result in (("producer", sent), ("consumer", got)):
        for key in ("spans", "exported", "failed"):
            if key in result:
                out[f"{side}_{key}"] = result[key]
    return out


def _summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [t["msgs_per_s"] for t in trials]
    out: dict[str, Any] = {
        "msgs_per_s": round(statistics.median(rates)),
        "trials_msgs_per_s": [round(r) for r in rates],
    }
    for key in ("spans", "exported", "failed", "producer_exported", "consumer_exported"):
        if key in trials[0]:
            out[key] = sum(int(t.get(key, 0)) for t in trials)
    if "cpu_s" in trials[0]:
        # CPU of the publishing process per message: its event loop and the exporter thread, which
        # share the GIL; unlike msg/s it hardly moves with the machine's load
        out["cpu_us_per_msg"] = round(
            statistics.median(t["cpu_s"] / (t["msgs_per_s"] * t["seconds"]) * 1e6 for t in trials), 1
        )
    return out


async def measure(count: int, trials: int, progress: Progress) -> dict[str, Any]:
    """The tracing figures, the modes alternating trial by trial against one embedded broker."""
    from harness import Cluster

    data = Path(tempfile.mkdtemp(prefix="streampair-bench-tracing-"))
    cluster = Cluster(data)
    plan = {"publish": (_publish_once, MODES), "e2e": (_e2e_once, ("off", "on"))}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        f: {m: [] for m in modes} for f, (_, modes) in plan.items()
    }
    try:
        await cluster.start_broker(LOG_LEVEL="warning")
        url = cluster.stream_env["STREAM_URL"]
        async with collector() as (endpoint, what):
            for figure, (once, modes) in plan.items():
                for trial in range(trials):
                    for mode in modes:
                        # A fresh, empty broker for every run: the embedded broker keeps what earlier runs
                        # published (in memory and on disk), which slows it for whichever mode comes later.
                        assert cluster.broker is not None
                        await cluster.broker.stop()
                        shutil.rmtree(data / "broker", ignore_errors=True)
                        await cluster.start_broker(LOG_LEVEL="warning")
                        result = await once(url, count, mode, endpoint)
                        runs[figure][mode].append(result)
                        progress(f"tracing {figure} {mode} #{trial + 1}: {result['msgs_per_s']:,.0f} msg/s")
    finally:
        await cluster.stop()
        shutil.rmtree(data, ignore_errors=True)
    out: dict[str, Any] = {"collector": what, "sampler": "always_on", "messages": count, "trials": trials}
    for figure, by_mode in runs.items():
        out[figure] = {mode: _summarise(results) for mode, results in by_mode.items()}
        off, on = out[figure]["off"]["msgs_per_s"], out[figure]["on"]["msgs_per_s"]
        out[f"tracing_{figure}_ratio"] = round(on / off, 3) if off else None
    return out


async def run(cfg: Any, progress: Progress) -> dict[str, Any]:
    """`make bench`'s hook: the figures, or why they are missing; never raises."""
    started = time.monotonic()
    try:
        out = await measure(cfg.throughput_messages, 2 if cfg.quick else 3, progress)
    except (Exception, TimeoutError) as error:  # one failed figure must not cost the others
        return {"error": f"{type(error).__name__}: {error}"[:400]}
    out["run_seconds"] = round(time.monotonic() - started, 1)
    return out


def finalize(results: dict[str, Any]) -> None:
    """Put the headline ratio and its goal next to the others in `results`."""
    figures = results.get("tracing") or {}
    ratio = figures.get("tracing_publish_ratio")
    results["tracing_publish_ratio"] = ratio
    results.setdefault("goals", {})["tracing_publish_ratio"] = {
        "goal": f"tracing on / off publish >= {GOAL} (always_on, OTLP to a local collector)",
        "met": None if ratio is None else ratio >= GOAL,
    }


def table(results: dict[str, Any]) -> str:
    figures = results.get("tracing") or {}
    if "error" in figures or not figures:
        return f"tracing: not measured: {figures.get('error', 'not run')}"
    publish, e2e = figures["publish"], figures["e2e"]

    def cpu(mode: str) -> str:
        value = publish[mode].get("cpu_us_per_msg")
        return "-" if value is None else f"{value:.1f}"

    met = results.get("goals", {}).get("tracing_publish_ratio", {}).get("met")
    lines = [
        "| tracing, embedded broker | off | spans made, not exported | on (OTLP) | on / off | 1 % sampled |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Publish throughput, 1 producer, acked (msg/s) | {publish['off']['msgs_per_s']:,} | "
        f"{publish['no_export']['msgs_per_s']:,} | {publish['on']['msgs_per_s']:,} | "
        f"{figures['tracing_publish_ratio']:.2f} | {publish['sampled']['msgs_per_s']:,} |",
        f"| Producer CPU per message (µs) | {cpu('off')} | {cpu('no_export')} | {cpu('on')} | "
        f"| {cpu('sampled')} |",
        f"| End-to-end throughput, acked (msg/s) | {e2e['off']['msgs_per_s']:,} | | "
        f"{e2e['on']['msgs_per_s']:,} | {figures['tracing_e2e_ratio']:.2f} | |",
        "",
        f"- tracing_publish_ratio {figures['tracing_publish_ratio']:.2f}: goal >= {GOAL}, "
        f"{'met' if met else '**NOT met**'}; sampler always_on, exporter: {figures['collector']}; "
        f"median of {figures['trials']} trials of {figures['messages']:,} messages, modes alternating",
    ]
    on = publish["on"]
    if "exported" in on:
        dropped = on["spans"] - on["exported"] - on.get("failed", 0)
        lines.append(
            f"- spans the producer's exporter delivered: {on['exported']:,} of {on['spans']:,} made "
            f"({on.get('failed', 0):,} failed, {dropped:,} dropped by the SDK's bounded queue)"
        )
    return "\n".join(lines)
