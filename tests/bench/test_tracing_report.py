"""bench/tracing.py's verdict and table (the figures themselves come from `make bench`)."""

from __future__ import annotations

from typing import Any

from bench import tracing


def figures(on: int, off: int = 20_000) -> dict[str, Any]:
    mode = {"msgs_per_s": 0, "cpu_us_per_msg": 1.0}
    return {
        "collector": "Jaeger v2",
        "messages": 100_000,
        "trials": 3,
        "publish": {
            "off": {**mode, "msgs_per_s": off},
            "no_export": dict(mode),
            "on": {**mode, "msgs_per_s": on, "spans": 300_003, "exported": 300_000, "failed": 0},
            "sampled": dict(mode),
        },
        "e2e": {"off": {"msgs_per_s": 10_000}, "on": {"msgs_per_s": 5_000}},
        "tracing_publish_ratio": round(on / off, 3),
        "tracing_e2e_ratio": 0.5,
    }


def test_the_ratio_is_judged_against_its_goal() -> None:
    for on, met in ((8_000, False), (16_000, True)):
        results: dict[str, Any] = {"tracing": figures(on), "goals": {"publish": {"goal": "x", "met": True}}}
        tracing.finalize(results)
        assert results["tracing_publish_ratio"] == on / 20_000
        assert results["goals"]["tracing_publish_ratio"]["met"] is met
        assert results["goals"]["publish"]["met"] is True, "the other goals are kept"
        text = tracing.table(results)
        assert f"| {on / 20_000:.2f} |" in text
        assert ("**NOT met**" in text) is not met
        assert "300,000 of 300,003 made (0 failed, 3 dropped" in text


def test_a_failed_measurement_is_reported_not_judged() -> None:
    results: dict[str, Any] = {"tracing": {"error": "RuntimeError: no broker"}, "goals": {}}
    tracing.finalize(results)
    assert results["goals"]["tracing_publish_ratio"]["met"] is None
    assert tracing.table(results) == "tracing: not measured: RuntimeError: no broker"
