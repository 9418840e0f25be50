"""`make bench` / `python -m bench`: every figure, every column, one run, on loopback.

    BENCH_QUICK=1      a short run (< 1 min): fewer messages and takeover trials, no Pulsar
    BENCH_PULSAR=0|1   measure a real Apache Pulsar: our client over WebSocket and over the binary
                       protocol, Pulsar's native client and a minimal WebSocket client (default:
                       1, 0 if quick)
    BENCH_STANDBY_RETRY_SECONDS   benchmark takeover with a non-default consumer retry (reported)

Writes bench/results/latest.json and latest.png and prints a Markdown table. Everything it
starts is stopped on the way out: normal end, error, Ctrl-C, SIGTERM or the run's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bench import chart, report, targets, tracing
from bench.config import BenchConfig


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": platform.processor() or "unknown",
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    with contextlib.suppress(OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


async def run(cfg: BenchConfig) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {**asdict(cfg), "payload_bytes": 100, "latency_rates": list(cfg.latency_rates)},
        "columns": {},
    }
    columns = results["columns"]
    started = time.monotonic()
    try:
        async with asyncio.timeout(cfg.deadline_seconds):
            columns["embedded"] = await targets.embedded(cfg, progress)
            results["tracing"] = await tracing.run(cfg, progress)  # tracing on next to off (issue #17)
            if cfg.pulsar:
                columns.update(await targets.pulsar(cfg, progress))
            else:
                skipped = {"unavailable": "skipped (BENCH_QUICK=1 without BENCH_PULSAR=1, or BENCH_PULSAR=0)"}
                columns.update({name: dict(skipped) for name in targets.PULSAR_COLUMNS})
    except TimeoutError:
        results["incomplete"] = f"the run's deadline of {cfg.deadline_seconds:.0f} s passed"
    results["run_seconds"] = round(time.monotonic() - started, 1)
    with contextlib.suppress(OSError):
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for name in report.COLUMNS:
        columns.setdefault(name, {"unavailable": results.get("incomplete", "not run")})
    tracing.finalize(report.finalize(results))
    return results


def main(args: list[str]) -> int:
    """Settings come from the environment only: `--help` prints them; anything else is refused
    (a run takes minutes, so a mistyped option must not start one)."""
    if args in (["-h"], ["--help"]):
        print((__doc__ or "").strip())
        return 0
    if args:
        print(f"bench: unknown argument(s) {' '.join(args)}; settings are environment variables (--help)")
        return 2
    cfg = BenchConfig.from_env()
    progress(f"{'quick' if cfg.quick else 'full'} run, Pulsar {'on' if cfg.pulsar else 'off'}")

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM cancels like Ctrl-C does, so the cleanup in every `finally` runs.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(cfg)

    try:
        results = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; everything started was stopped")
        return 130
    path = report.write_json(results)
    png = chart.write_chart(results)
    print(report.table(results))
    print()
    print(tracing.table(results))
    print()
    print(f"results: {path.relative_to(report.RESULTS.parent.parent)}", end="")
    print(
        f", chart: {png.relative_to(report.RESULTS.parent.parent)}"
        if png
        else " (no chart: matplotlib missing)"
    )
    print(f"run time: {results['run_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
