"""Percentiles and summaries of samples: plain Python, no numpy in the measuring path."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's default).

    With n samples the k-th smallest (0-based) sits at q = 100 k / (n - 1).
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def summary(samples: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """count, min, p50, p90, p99, p99.9 and max of the samples, rounded."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    out: dict[str, float | int] = {"count": len(ordered), "min": round(ordered[0], digits)}
    for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
        out[name] = round(percentile(ordered, q), digits)
    out["max"] = round(ordered[-1], digits)
    return out
