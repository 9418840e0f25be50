"""How much work a run does: the full run, or `BENCH_QUICK=1` (under a minute)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


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

        def pick(quick_value: T, full_value: T) -> T:
            return quick_value if quick else full_value

        return cls(
            quick=quick,
            pulsar=pulsar,
            throughput_messages=pick(20_000, 100_000),
            latency_rates=(100, 1_000, 10_000),
            latency_seconds=pick(1.5, 10.0),
            takeover_trials=pick(5, 20),
            resources_seconds=pick(3.0, 15.0),
            ready_trials=pick(1, 3),
            standby_retry=retry,
            repeats=pick(1, 3),
            standby_replicas=(1, 5, 20),
            standby_seconds=pick(4.0, 20.0),
            standby_warmup=pick(0.0, 15.0),
            deadline_seconds=pick(600.0 if pulsar else 180.0, 3600.0),
        )
