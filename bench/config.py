"""How much work a run does: the full run, or `BENCH_QUICK=1` (under a minute)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    pulsar: bool  # also measure a real Apache Pulsar: WebSocket, binary, native and raw WebSocket clients
    throughput_messages: int
    latency_rates: tuple[int, ...]
    latency_seconds: float
    takeover_trials: int
    resources_seconds: float
    ready_trials: int
    #: None: the consumer's default STANDBY_RETRY_SECONDS; a value is reported as non-default.
    standby_retry: str | None
    #: Runs of each throughput figure per Pulsar column, their order alternating (the median is
    #: kept): the ratios between columns are measured side by side on a noisy shared machine.
    repeats: int
    #: Broker CPU per standby (bench/standby.py): replicas, seconds per window, warm-up.
    standby_replicas: tuple[int, ...]
    standby_seconds: float
    standby_warmup: float
    deadline_seconds: float  # the whole run, however it goes

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BenchConfig:
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0")
        pulsar = env.get("BENCH_PULSAR", "0" if quick else "1") not in ("", "0")
        retry = env.get("BENCH_STANDBY_RETRY_SECONDS") or None
        if quick:
            return cls(
                quick=True,
                pulsar=pulsar,
                throughput_messages=20_000,
                latency_rates=(100, 1_000, 10_000),
                latency_seconds=1.5,
                takeover_trials=5,
                resources_seconds=3.0,
                ready_trials=1,
                standby_retry=retry,
                repeats=1,
                standby_replicas=(1, 5, 20),
                standby_seconds=4.0,
                standby_warmup=0.0,
                deadline_seconds=600.0 if pulsar else 180.0,
            )
        return cls(
            quick=False,
            pulsar=pulsar,
            throughput_messages=100_000,
            latency_rates=(100, 1_000, 10_000),
            latency_seconds=10.0,
            takeover_trials=20,
            resources_seconds=15.0,
            ready_trials=3,
            standby_retry=retry,
            repeats=3,
            standby_replicas=(1, 5, 20),
            standby_seconds=20.0,
            standby_warmup=15.0,
            deadline_seconds=3600.0,
        )
