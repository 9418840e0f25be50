"""The benchmark's arithmetic and output, on a sample result: no processes, no timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.config import BenchConfig
from bench.stats import percentile, summary


def sample() -> dict[str, Any]:
    def column(publish: int, e2e: int, p99: float) -> dict[str, Any]:
        latency = {"p50": 0.5, "p99": p99, "p999": p99 * 2}
        return {
            "publish": {"msgs_per_s": publish},
            "e2e": {"msgs_per_s": e2e},
            "latency": {
                "100": {"latency_ms": latency, "samples_ms": [0.4, 0.5, 0.6]},
                "1000": {"latency_ms": latency, "samples_ms": [0.4, 0.5, 0.6]},
                "10000": {"error": "WorkerError: consumer received 10 of 100 messages"},
            },
            "takeover": {
                "seconds": {"p50": 0.6, "p99": 1.2},
                "standby_retry_seconds": 1.0,
                "standby_retry_is_default": True,
            },
            "resources": {s: {"rss_mb_max": 50.0, "cpu_percent": 10.0} for s in report.SERVICES},
            "ready": {s: {"max": 0.5} for s in report.SERVICES},
        }

    return {
        "date": "2026-11-28T00:00:00+00:00",
        "machine": {"cores": 2},
        "settings": {"latency_rates": [100, 1000, 10000]},
        "columns": {
            "embedded": {**column(30_000, 20_000, 4.0), "standby": standby(0.4)},
            "pulsar": {**column(12_000, 9_000, 8.0), "standby": standby(0.6)},
            "pulsar_binary": {**column(18_000, 14_250, 9.0), "standby": standby(0.2)},
            "pulsar_native": column(20_000, 15_000, 8.0),
            "pulsar_raw_ws": {"publish": {"msgs_per_s": 13_000}, "e2e": {"msgs_per_s": 10_000}},
        },
    }


def standby(per_replica: float) -> dict[str, Any]:
    figures = {n: {"cpu_pct_per_replica": per_replica, "broker_cpu_pct": 10.0} for n in ("1", "5", "20")}
    return {**figures, "fit": per_replica, "seconds": 20.0}


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 50) == 35.0
    assert percentile(data, 40) == pytest.approx(29.0)  # numpy.percentile(data, 40) == 29.0
    assert percentile(list(reversed(data)), 90) == pytest.approx(46.0)
    assert percentile([7.0], 99.9) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_of_one_to_a_thousand() -> None:
    s = summary([float(i) for i in range(1, 1001)])
    assert s["count"] == 1000
    assert s["p50"] == pytest.approx(500.5)
    assert s["p99"] == pytest.approx(990.01)
    assert s["p999"] == pytest.approx(999.001)
    assert (s["min"], s["max"]) == (1.0, 1000.0)
    assert summary([]) == {"count": 0}


def test_json_has_the_required_keys_and_no_raw_samples(tmp_path: Path) -> None:
    results = report.finalize(sample())
    path = report.write_json(results, tmp_path / "latest.json")
    data = json.loads(path.read_text())
    for key in (
        "publish_msgs_per_s",
        "e2e_msgs_per_s",
        "e2e_p99_ms_at_1000",
        "takeover_p99_s",
        "rss_mb_max",
        "ready_s",
    ):
        assert key in data
    assert data["publish_msgs_per_s"] == 30_000
    assert data["e2e_p99_ms_at_1000"] == 4.0
    assert data["rss_mb_max"] == 50.0
    assert set(data["columns"]) == {"embedded", "pulsar", "pulsar_binary", "pulsar_native", "pulsar_raw_ws"}
    assert data["columns"]["pulsar"]["publish_msgs_per_s"] == 12_000
    assert "samples_ms" not in json.dumps(data)
    assert data["native_publish_ratio"] == 0.6
    # issue #14: the binary transport against the native client, the WebSocket one against a raw client
    assert data["pulsar_binary_publish_ratio"] == 0.9
    assert data["pulsar_binary_e2e_ratio"] == 0.95
    assert data["pulsar_binary_p99_ratio_at_1000"] == 1.125
    assert data["pulsar_binary_takeover_p99_s"] == 1.2
    assert data["pulsar_ws_e2e_ratio_to_raw_ws"] == 0.9
    assert data["standby_cpu_pct_per_replica_pulsar_binary"] == {"1": 0.2, "5": 0.2, "20": 0.2, "fit": 0.2}
    assert data["standby_cpu_pct_per_replica_pulsar_ws"]["20"] == 0.6
    assert data["standby_cpu_pct_per_replica_embedded"]["fit"] == 0.4


def test_goals_met_and_missed() -> None:
    results = report.finalize(sample())
    goals = results["goals"]
    assert goals["publish"]["met"] is True
    assert goals["latency"]["met"] is True
    assert goals["native_ratio"]["met"] is True
    for name in ("binary_publish", "binary_e2e", "binary_p99", "binary_takeover", "ws_raw_ratio"):
        assert goals[name]["met"] is True, name
    assert goals["standby_binary"]["met"] is True
    results["columns"]["pulsar_native"]["e2e"]["msgs_per_s"] = 20_000
    results["columns"]["pulsar_binary"]["standby"]["20"]["cpu_pct_per_replica"] = 1.5
    results = report.finalize(results)
    assert results["goals"]["binary_e2e"]["met"] is False  # 14,250 / 20,000
    assert results["goals"]["standby_binary"]["met"] is False
    results["columns"]["embedded"]["resources"]["broker"]["rss_mb_max"] = 81.0
    results["columns"]["pulsar"] = {"unavailable": "java not found"}
    goals = report.evaluate(results)
    assert goals["rss"]["met"] is False
    assert goals["native_ratio"]["met"] is None  # not measured, neither met nor missed


def test_table_shows_every_column_goal_and_unavailable_reason() -> None:
    results = report.finalize(sample())
    results["columns"]["pulsar"] = {"unavailable": "Pulsar did not start: port in use"}
    text = report.table(results)
    lines = text.splitlines()
    assert lines[0].startswith(
        "| figure | embedded broker | Apache Pulsar (WebSocket) | Pulsar binary (streampair) | "
        "Pulsar native client | Pulsar raw WebSocket client |"
    )
    publish = next(line for line in lines if line.startswith("| Publish throughput"))
    assert "| 30,000 | unavailable | 18,000 | 20,000 | 13,000 | >= 20,000 msg/s | yes |" in publish
    e2e_ratio = next(line for line in lines if "/ native client: e2e |" in line)
    assert "| 0.95 |" in e2e_ratio and "| yes |" in e2e_ratio
    standby_20 = next(line for line in lines if "per standby, 20 standby replicas" in line)
    assert "| 0.40 | unavailable | 0.20 |" in standby_20
    at_1000 = next(line for line in lines if "at 1,000 msg/s (ms)" in line)
    assert "0.50 / 4.00 / 8.00" in at_1000 and "| yes |" in at_1000
    assert "error" in next(line for line in lines if "at 10,000 msg/s (ms)" in line)
    assert "- pulsar: unavailable: Pulsar did not start: port in use" in text
    assert "STANDBY_RETRY_SECONDS=1 (default)" in text


def test_quick_config_is_small_and_skips_pulsar_unless_asked() -> None:
    quick = BenchConfig.from_env({"BENCH_QUICK": "1"})
    assert quick.quick and not quick.pulsar and quick.takeover_trials == 5
    assert BenchConfig.from_env({"BENCH_QUICK": "1", "BENCH_PULSAR": "1"}).pulsar
    full = BenchConfig.from_env({})
    assert full.pulsar and full.takeover_trials >= 20 and full.standby_retry is None
