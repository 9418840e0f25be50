"""`bench/results/latest.png`: latency distribution per rate and throughput, per column."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report import COLUMNS, HEADERS, RESULTS, dig

LABELS = HEADERS
#: x positions of the latency curves: -log10(1 - q), so 50 %, 90 %, 99 %, 99.9 % are evenly spaced.
TICKS = (0.5, 0.9, 0.99, 0.999)


def _curve(samples: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(samples)
    n = len(ordered)
    xs, ys = [], []
    for i, value in enumerate(ordered):
        q = (i + 0.5) / n
        if q > 0.9995:
            break
        xs.append(-math.log10(1 - q))
        ys.append(value)
    return xs, ys


def write_chart(results: dict[str, Any], path: Path = RESULTS / "latest.png") -> Path | None:
    """Draw the chart; None when matplotlib is not installed (the JSON and table do not need it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    columns = results.get("columns", {})
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    styles = {"100": ":", "1000": "-", "10000": "--"}
    for name in COLUMNS:
        for rate, style in styles.items():
            samples = dig(columns, name, "latency", rate, "samples_ms")
            if samples:
                xs, ys = _curve(samples)
                lat.plot(xs, ys, style, label=f"{LABELS[name]}, {int(rate):,}/s")
    lat.set_xticks([-math.log10(1 - q) for q in TICKS], [f"p{q * 100:g}" for q in TICKS])
    lat.set_yscale("log")
    lat.set_xlabel("percentile")
    lat.set_ylabel("end-to-end latency (ms)")
    lat.set_title("End-to-end latency at fixed rates")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=7)
    names = [n for n in COLUMNS if isinstance(columns.get(n), dict) and "unavailable" not in columns[n]]
    width = 0.38
    for offset, (key, label) in enumerate((("publish", "publish"), ("e2e", "end to end"))):
        values = [dig(columns, n, key, "msgs_per_s") or 0 for n in names]
        positions = [i + (offset - 0.5) * width for i in range(len(names))]
        bars = thr.bar(positions, values, width, label=label)
        thr.bar_label(bars, [f"{v:,.0f}" for v in values], fontsize=7)
    thr.set_xticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    thr.set_ylabel("messages/s (100-byte payloads, acked)")
    thr.set_title("Throughput, one producer")
    thr.legend(fontsize=8)
    machine = results.get("machine", {})
    title = f"streampair bench {results.get('date', '')}: {machine.get('cores')} cores"
    fig.suptitle(f"{title}, {machine.get('cpu_model')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
