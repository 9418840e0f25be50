"""Results: the headline figures, the goals and whether they are met, the Markdown table,
`bench/results/latest.json` and the chart `bench/results/latest.png`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("embedded", "pulsar", "pulsar_binary", "pulsar_native", "pulsar_raw_ws")
HEADERS = {
    "embedded": "embedded broker",
    "pulsar": "Apache Pulsar (WebSocket)",
    "pulsar_binary": "Pulsar binary (streampair)",
    "pulsar_native": "Pulsar native client",
    "pulsar_raw_ws": "Pulsar raw WebSocket client",
}
#: Where `standby_cpu_pct_per_replica_<target>` comes from.
STANDBY_TARGETS = {"embedded": "embedded", "pulsar_ws": "pulsar", "pulsar_binary": "pulsar_binary"}
SERVICES = ("broker", "producer", "consumer")
#: Keys whose raw samples feed the chart but are left out of the JSON (tens of thousands of numbers).
SAMPLE_KEYS = ("samples_ms",)


def dig(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None when any step is missing or holds an error."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def headline(column: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue names, flat, from one column's detailed results."""
    rss = [dig(column, "resources", s, "rss_mb_max") for s in SERVICES]
    ready = [dig(column, "ready", s, "max") for s in SERVICES]
    known_rss = [v for v in rss if v is not None]
    known_ready = [v for v in ready if v is not None]
    return {
        "publish_msgs_per_s": dig(column, "publish", "msgs_per_s"),
        "e2e_msgs_per_s": dig(column, "e2e", "msgs_per_s"),
        "e2e_p99_ms_at_1000": dig(column, "latency", "1000", "latency_ms", "p99"),
        "takeover_p99_s": dig(column, "takeover", "seconds", "p99"),
        "rss_mb_max": max(known_rss) if known_rss else None,
        "ready_s": max(known_ready) if known_ready else None,
        "standby_cpu_pct_per_replica": standby_figures(column),
    }


def standby_figures(column: dict[str, Any]) -> dict[str, float] | None:
    """Broker CPU per standby (% of a core) by replicas, and the fit over them."""
    measured = dig(column, "standby")
    if not isinstance(measured, dict) or "fit" not in measured:
        return None
    out = {n: fig["cpu_pct_per_replica"] for n, fig in measured.items() if n.isdigit()}
    out["fit"] = measured["fit"]
    return out


def ratio(results: dict[str, Any], path: tuple[str, ...], ours: str, theirs: str) -> float | None:
    """Our column's figure over the yardstick's, from the same run."""
    a = dig(results, "columns", ours, *path)
    b = dig(results, "columns", theirs, *path)
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return round(float(a) / float(b), 3)


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    p99 = ("latency", "1000", "latency_ms", "p99")
    binary, native = "pulsar_binary", "pulsar_native"
    return {
        "pulsar_binary_publish_ratio": ratio(results, ("publish", "msgs_per_s"), binary, native),
        "pulsar_binary_e2e_ratio": ratio(results, ("e2e", "msgs_per_s"), binary, native),
        "pulsar_binary_p99_ratio_at_1000": ratio(results, p99, binary, native),
        "pulsar_ws_e2e_ratio_to_raw_ws": ratio(results, ("e2e", "msgs_per_s"), "pulsar", "pulsar_raw_ws"),
    }


@dataclass(frozen=True)
class Goal:
    name: str
    text: str
    check: Callable[[dict[str, Any]], bool | None]  # None: not measured


def _at_least(path: tuple[str, ...], low: float) -> Callable[[dict[str, Any]], bool | None]:
    def check(results: dict[str, Any]) -> bool | None:
        value = dig(results, *path)
        return None if value is None else bool(value >= low)

    return check


def _at_most(paths: list[tuple[str, ...]], high: float) -> Callable[[dict[str, Any]], bool | None]:
    def check(results: dict[str, Any]) -> bool | None:
        values = [dig(results, *p) for p in paths]
        if any(v is None for v in values):
            return None
        return all(v <= high for v in values)

    return check


def _native_ratio(results: dict[str, Any]) -> bool | None:
    ratio = native_ratio(results)
    return None if ratio is None else ratio >= 0.5


def native_ratio(results: dict[str, Any]) -> float | None:
    ours = dig(results, "columns", "pulsar", "publish", "msgs_per_s")
    native = dig(results, "columns", "pulsar_native", "publish", "msgs_per_s")
    if not ours or not native:
        return None
    return round(float(ours) / float(native), 3)


def _flat_at_least(key: str, low: float) -> Callable[[dict[str, Any]], bool | None]:
    def check(results: dict[str, Any]) -> bool | None:
        value = results.get(key)
        return None if value is None else bool(value >= low)

    return check


def _flat_at_most(key: str, high: float) -> Callable[[dict[str, Any]], bool | None]:
    def check(results: dict[str, Any]) -> bool | None:
        value = results.get(key)
        return None if value is None else bool(value <= high)

    return check


def _standby_binary(results: dict[str, Any]) -> bool | None:
    """<= 1 % per standby at 20 replicas and by the fit (at 1 and 5 the noise of a window of a
    shared machine, +-1 % of a core, is larger than what is measured)."""
    figures = results.get("standby_cpu_pct_per_replica_pulsar_binary")
    if not isinstance(figures, dict) or "20" not in figures:
        return None
    return bool(figures["20"] <= 1.0 and figures["fit"] <= 1.0)


E = ("columns", "embedded")
GOALS = (
    Goal("publish", ">= 20,000 msg/s", _at_least((*E, "publish", "msgs_per_s"), 20_000)),
    Goal("e2e", ">= 15,000 msg/s", _at_least((*E, "e2e", "msgs_per_s"), 15_000)),
    Goal(
        "latency", "p99 <= 10 ms at 1,000 msg/s", _at_most([(*E, "latency", "1000", "latency_ms", "p99")], 10)
    ),
    Goal("takeover", "p99 <= 1.5 s", _at_most([(*E, "takeover", "seconds", "p99")], 1.5)),
    Goal(
        "rss", "<= 80 MB each service", _at_most([(*E, "resources", s, "rss_mb_max") for s in SERVICES], 80)
    ),
    Goal("ready", "<= 1.5 s each service", _at_most([(*E, "ready", s, "max") for s in SERVICES], 1.5)),
    Goal("native_ratio", "WebSocket producer >= 0.5 x native (on Pulsar)", _native_ratio),
    Goal(
        "binary_publish",
        "binary publish >= 0.9 x native",
        _flat_at_least("pulsar_binary_publish_ratio", 0.9),
    ),
    Goal("binary_e2e", "binary e2e >= 0.9 x native", _flat_at_least("pulsar_binary_e2e_ratio", 0.9)),
    Goal(
        "binary_p99",
        "binary p99 at 1,000 msg/s <= 1.2 x native",
        _flat_at_most("pulsar_binary_p99_ratio_at_1000", 1.2),
    ),
    Goal(
        "binary_takeover",
        "p99 <= 1.5 s on Pulsar binary",
        _at_most([("columns", "pulsar_binary", "takeover", "seconds", "p99")], 1.5),
    ),
    Goal(
        "ws_raw_ratio",
        "WebSocket e2e >= 0.9 x a minimal WebSocket client",
        _flat_at_least("pulsar_ws_e2e_ratio_to_raw_ws", 0.9),
    ),
    Goal("standby_binary", "<= 1 % of a core per standby on Pulsar binary", _standby_binary),
)


def evaluate(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g.name: {"goal": g.text, "met": g.check(results)} for g in GOALS}


# -- table -----------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def _cell(column: dict[str, Any] | None, render: Callable[[dict[str, Any]], str]) -> str:
    if column is None:
        return "-"
    if "unavailable" in column:
        return "unavailable"
    return render(column)


def _triple(
    column: dict[str, Any], *path: str, digits: int = 2, keys: tuple[str, ...] = ("p50", "p99", "p999")
) -> str:
    value = dig(column, *path)
    if not isinstance(value, dict):
        error = dig(column, *path[:2], "error") or dig(column, path[0], "error")
        return "error" if error else "-"
    return " / ".join(_num(value.get(k), 2) for k in keys)


def _met(flag: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "n/a"}[flag]


Render = Callable[[dict[str, Any]], str]

#: The figures across columns, one row each below the table: (label, figure, goal).
SUMMARY_ROWS = (
    ("WebSocket producer / native client publish, on Pulsar", "native", "native_ratio"),
    ("Pulsar binary (streampair) / native client: publish", "pulsar_binary_publish_ratio", "binary_publish"),
    ("Pulsar binary (streampair) / native client: e2e", "pulsar_binary_e2e_ratio", "binary_e2e"),
    ("Pulsar binary / native: e2e p99 at 1,000 msg/s", "pulsar_binary_p99_ratio_at_1000", "binary_p99"),
    ("Pulsar WebSocket / raw WebSocket client: e2e", "pulsar_ws_e2e_ratio_to_raw_ws", "ws_raw_ratio"),
    ("Takeover p99 on Pulsar binary (s)", "binary_takeover", "binary_takeover"),
    ("Broker CPU per standby on Pulsar binary (fit, % of a core)", "binary_standby", "standby_binary"),
)


def _number_at(*path: str, digits: int = 0) -> Render:
    def render(column: dict[str, Any]) -> str:
        value = dig(column, *path)
        if value is None and dig(column, path[0], "error"):
            return "error"
        return _num(value, digits)

    return render


def _triple_at(*path: str, keys: tuple[str, ...] = ("p50", "p99", "p999")) -> Render:
    def render(column: dict[str, Any]) -> str:
        return _triple(column, *path, keys=keys)

    return render


def table(results: dict[str, Any]) -> str:
    cols = results.get("columns", {})
    goals = results.get("goals") or evaluate(results)
    # (label, how to render one column's cell, the goal of this row or "")
    rows: list[tuple[str, Render, str]] = [
        ("Publish throughput, 1 producer, acked (msg/s)", _number_at("publish", "msgs_per_s"), "publish"),
        ("End-to-end throughput, acked (msg/s)", _number_at("e2e", "msgs_per_s"), "e2e"),
    ]
    for rate in results.get("settings", {}).get("latency_rates", [100, 1000, 10000]):
        label = f"E2E latency p50 / p99 / p99.9 at {rate:,} msg/s (ms)"
        rows.append(
            (label, _triple_at("latency", str(rate), "latency_ms"), "latency" if rate == 1000 else "")
        )
    rows.append(
        (
            "Takeover after SIGKILL p50 / p99 (s)",
            _triple_at("takeover", "seconds", keys=("p50", "p99")),
            "takeover",
        )
    )
    for svc in SERVICES:
        label = f"Peak RSS {svc} at 1,000 msg/s (MB)"
        rows.append(
            (label, _number_at("resources", svc, "rss_mb_max", digits=1), "rss" if svc == "broker" else "")
        )
    for svc in SERVICES:
        rows.append(
            (
                f"CPU {svc} at 1,000 msg/s (% of a core)",
                _number_at("resources", svc, "cpu_percent", digits=1),
                "",
            )
        )
    for svc in SERVICES:
        rows.append(
            (
                f"Start to ready, {svc} (s)",
                _number_at("ready", svc, "max", digits=2),
                "ready" if svc == "broker" else "",
            )
        )
    for n in ("1", "5", "20"):
        rows.append(
            (
                f"Broker CPU per standby, {n} standby replicas (% of a core)",
                _number_at("standby", n, "cpu_pct_per_replica", digits=2),
                "",
            )
        )
    rows.append(
        ("Broker CPU per standby, fit over 1/5/20 (% of a core)", _number_at("standby", "fit", digits=2), "")
    )
    header = "| figure | " + " | ".join(HEADERS[name] for name in COLUMNS) + " | goal | met |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS) + "---|---|"]
    for label, render, goal in rows:
        cells = [_cell(cols.get(name), render) for name in COLUMNS]
        goal_text = goals[goal]["goal"] if goal else ""
        met = _met(goals[goal]["met"]) if goal else ""
        lines.append(f"| {label} | {' | '.join(cells)} | {goal_text} | {met} |")
    flat: dict[str, Any] = {
        **ratios(results),
        "native": native_ratio(results),
        "binary_takeover": dig(cols, "pulsar_binary", "takeover", "seconds", "p99"),
        "binary_standby": dig(cols, "pulsar_binary", "standby", "fit"),
    }
    blank = " | " * (len(COLUMNS) - 1)
    for label, key, goal in SUMMARY_ROWS:
        met = _met(goals[goal]["met"])
        lines.append(f"| {label} | {_num(flat[key], 2)}{blank}| {goals[goal]['goal']} | {met} |")
    notes = []
    for name in COLUMNS:
        reason = dig(cols, name, "unavailable")
        if reason:
            notes.append(f"- {name}: unavailable: {reason}")
        for key, value in (cols.get(name) or {}).items():
            if isinstance(value, dict) and "error" in value:
                notes.append(f"- {name} {key}: {value['error']}")
    takeover = dig(cols, "embedded", "takeover")
    if isinstance(takeover, dict) and "standby_retry_seconds" in takeover:
        default = "default" if takeover.get("standby_retry_is_default") else "NON-DEFAULT"
        retry = takeover["standby_retry_seconds"]
        notes.append(f"- takeover measured with STANDBY_RETRY_SECONDS={retry:g} ({default})")
    notes.append(
        "- the first six goals apply to the embedded broker column; the ratios compare columns of the same "
        "run on the same Pulsar (throughput: the median of alternating runs)"
    )
    return "\n".join([*lines, "", *notes])


# -- files -----------------------------------------------------------------------------------------


def strip_samples(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_samples(v) for k, v in obj.items() if k not in SAMPLE_KEYS}
    if isinstance(obj, list):
        return [strip_samples(v) for v in obj]
    return obj


def finalize(results: dict[str, Any]) -> dict[str, Any]:
    """Add the flat headline figures (top level: the embedded column) and the goals."""
    for column in results.get("columns", {}).values():
        if isinstance(column, dict) and "unavailable" not in column:
            column.update(headline(column))
    embedded = results.get("columns", {}).get("embedded") or {}
    flat = headline(embedded) if "unavailable" not in embedded else {}
    results.update(flat)
    results["native_publish_ratio"] = native_ratio(results)
    results.update(ratios(results))
    takeover = ("columns", "pulsar_binary", "takeover", "seconds", "p99")
    results["pulsar_binary_takeover_p99_s"] = dig(results, *takeover)
    for target, column in STANDBY_TARGETS.items():
        source = results.get("columns", {}).get(column) or {}
        results[f"standby_cpu_pct_per_replica_{target}"] = standby_figures(source)
    results["goals"] = evaluate(results)
    return results


def write_json(results: dict[str, Any], path: Path = RESULTS / "latest.json") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strip_samples(results), indent=2) + "\n")
    return path
