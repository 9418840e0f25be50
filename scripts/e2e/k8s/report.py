#!/usr/bin/env python3
"""Results of the Kubernetes checks, and the one-line summary `make e2e-k8s` ends with.

report.py summary RESULTS.json PHASE=SECONDS...   print the summary line; exit 1 unless all passed
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from log_events import RECEIVED, LogEvent


@dataclass
class Report:
    results: list[dict[str, Any]] = field(default_factory=list)
    takeovers: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append({"check": name, "ok": ok, "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def note(self, name: str, detail: str) -> None:
        print(f"NOTE  {name}: {detail}", flush=True)

    def passed(self) -> bool:
        return bool(self.results) and all(r["ok"] for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"results": self.results, "takeovers": self.takeovers, "facts": self.facts}


def seq_report(events: list[LogEvent], last_published: int) -> tuple[bool, str]:
    """No gap: per producer, every seq between the first and the last delivered arrived at some
    consumer Pod (duplicates are allowed: at-least-once), and deliveries reached the producer's last."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.kind == RECEIVED and event.producer_id is not None and event.seq is not None:
            seqs[event.producer_id].append(event.seq)
    if not seqs:
        return False, "no message was delivered"
    parts, ok = [], True
    for producer_id, values in seqs.items():
        unique = set(values)
        low, high = min(unique), max(unique)
        missing = sorted(set(range(low, high + 1)) - unique)
        ok = ok and not missing
        parts.append(
            f"producer {producer_id}: seq {low}..{high} all delivered"
            if not missing
            else f"producer {producer_id}: {len(missing)} missing, first {missing[:10]}"
        )
        parts[-1] += f", {len(values) - len(unique)} redelivered"
    highest = max(max(v) for v in seqs.values())
    if highest < last_published:
        ok = False
        parts.append(f"last delivered {highest} < last published {last_published}")
    else:
        parts.append(f"last published {last_published}")
    return ok, "; ".join(parts)


def summary(results: dict[str, Any], phases: dict[str, float]) -> tuple[bool, str]:
    checks = results.get("results", [])
    failed = [r["check"] for r in checks if not r["ok"]]
    ok = bool(checks) and not failed
    takeovers = results.get("takeovers", {})
    facts = results.get("facts", {})
    total = phases.pop("total", sum(phases.values()))
    line = (
        f"e2e-k8s: {'PASS' if ok else 'FAIL'} {len(checks) - len(failed)}/{len(checks)} checks"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + f" | wall {total:.0f}s ("
        + ", ".join(f"{k} {v:.0f}s" for k, v in phases.items())
        + ")"
        + (
            f" | app Ready {facts['ready_after_apply_s']}s after apply"
            if "ready_after_apply_s" in facts
            else ""
        )
        + " | takeover in Pods: "
        + (", ".join(f"{k} {v:.2f}s" for k, v in takeovers.items()) or "none measured")
        + (
            " (delete: from kubectl delete; rollout, drain: from the old active's SIGTERM)"
            if takeovers
            else ""
        )
        + f" | NetworkPolicy: {facts.get('network_policy', 'not checked')}"
    )
    return ok, line


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "summary":
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    phases = {k: float(v) for k, v in (a.split("=", 1) for a in argv[2:])}
    ok, line = summary(results, phases)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
