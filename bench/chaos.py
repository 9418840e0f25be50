"""Fault-injection suite: `make chaos` (`python -m bench.chaos`) -> bench/results/chaos.json.

Everything runs on loopback as real processes (`harness`), each scenario in its own
temporary data directory, and everything started is stopped again, also on failure or Ctrl-C.
The scenarios, by theme:

- process and network faults (`bench.chaos_faults`): `consumer_sigkill`, `broker_sigkill`,
  `proxy_drop`, `proxy_freeze`, `slow_consumer`;
- a real Apache Pulsar killed under load (`bench.chaos_pulsar`): `pulsar_sigkill` (the services on
  its WebSocket API) and `pulsar_sigkill_binary` (on its binary protocol);
- poison messages (`bench.chaos_poison`): `poison`, handler failures and malformed properties
  interleaved with good messages, dead-lettered, while the active consumer is SIGKILLed;
- hostile HTTP clients (`bench.chaos_hostile`): `hostile_http`, the adversarial requests of the
  2026-11-29 review against the producer's API.
- tokens rotated under load (`bench.chaos_tokens`): `token_rotation`, three rotations under
  1,000 msg/s, Exclusive with a standby, every connection dropped after each; nothing lost or refused.

Counting (`bench.chaos_common`): `published` is what the broker acknowledged, `received` what
the consumers logged, `lost` the difference; poison messages count as received when their copy
is in the dead-letter stream. Exit status 1 if anything was lost, a scenario failed, or one of
its checks failed. `CHAOS_QUICK=1` runs a short version.
`python -m bench.chaos NAME...` runs only the named scenarios.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from streampair.logs import configure_logging

from bench import chaos_tokens
from bench.chaos_common import Outcome
from bench.chaos_faults import broker_sigkill, consumer_sigkill, proxy_fault, slow_consumer
from bench.chaos_hostile import hostile_http
from bench.chaos_poison import poison
from bench.chaos_pulsar import pulsar_sigkill
from harness import Cluster

RESULTS = Path(__file__).resolve().parent / "results" / "chaos.json"
SCENARIO_TIMEOUT = 300.0
# A Pulsar kill costs a JVM restart: 6-8 s on an idle machine, near 30 s on a loaded one.
TIMEOUTS = {"pulsar_sigkill": 600.0, "pulsar_sigkill_binary": 600.0}
TOTAL_TIMEOUT = 1800.0  # 1200 s before the binary Pulsar scenario


async def run_scenario(name: str, body: Callable[[Cluster], Awaitable[Outcome]]) -> Outcome:
    started = time.monotonic()
    print(f"chaos: {name} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
        cluster = Cluster(Path(tmp))
        limit = TIMEOUTS.get(name, SCENARIO_TIMEOUT)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                outcome = await body(cluster)
        except Exception as error:  # recorded and reported; the suite goes on and fails at the end
            why = f"{type(error).__name__}: {error}"[:2000]
            if deadline.expired():
                why = f"did not finish within {limit:.0f} s"
            outcome = Outcome(name, extra={"error": why})
        finally:
            await cluster.stop()
    outcome.extra["seconds"] = round(time.monotonic() - started, 1)
    print(f"chaos: {name} done in {outcome.extra['seconds']} s", flush=True)
    return outcome


SCENARIOS: list[tuple[str, Callable[[Cluster], Awaitable[Outcome]]]] = [
    ("consumer_sigkill", consumer_sigkill),
    ("broker_sigkill", broker_sigkill),
    ("proxy_drop", lambda c: proxy_fault(c, "drop")),
    ("proxy_freeze", lambda c: proxy_fault(c, "freeze")),
    ("slow_consumer", slow_consumer),
    ("pulsar_sigkill", pulsar_sigkill),
    ("poison", poison),
    ("hostile_http", hostile_http),
    ("token_rotation", lambda c: chaos_tokens.token_rotation(c, Outcome)),
    # last: a second JVM's kills must not leave the scenarios above without time
    ("pulsar_sigkill_binary", lambda c: pulsar_sigkill(c, "binary")),
]


def table(outcomes: list[Outcome]) -> str:
    cols = ["scenario", "published", "received", "lost", "duplicates", "max_takeover_s", "peak_rss_mb"]
    rows = [[str(o.as_json()[c]) for c in cols] for o in outcomes]
    for row, o in zip(rows, outcomes, strict=True):
        if "skipped" in o.extra:
            row[1:] = ["skipped", *["-"] * (len(cols) - 2)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    for o in outcomes:
        if "error" in o.extra:
            lines.append(f"{o.scenario}: FAILED: {o.extra['error']}")
        elif "skipped" in o.extra:
            lines.append(f"{o.scenario}: skipped (not a failure): {o.extra['skipped']}")
        if o.failed_checks:
            lines.append(f"{o.scenario}: FAILED checks: {', '.join(o.failed_checks)}")
    return "\n".join(lines)


async def main(only: list[str]) -> int:
    if only in (["-h"], ["--help"]):
        print((__doc__ or "").strip())
        print(f"scenarios: {', '.join(n for n, _ in SCENARIOS)}")
        return 0
    # The poison and hostile scenarios use the library in this process: only its warnings.
    configure_logging("chaos", level="warning", fmt="console")
    started = time.monotonic()
    outcomes: list[Outcome] = []
    unknown = sorted(set(only) - {n for n, _ in SCENARIOS})
    if unknown:
        print(f"chaos: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(n for n, _ in SCENARIOS)}")
        return 2
    chosen = [(n, b) for n, b in SCENARIOS if not only or n in only]
    for name, body in chosen:
        if time.monotonic() - started > TOTAL_TIMEOUT:
            outcomes.append(Outcome(name, extra={"error": "skipped: the suite ran out of time"}))
            continue
        outcomes.append(await run_scenario(name, body))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([o.as_json() for o in outcomes], indent=2) + "\n")
    print(table(outcomes))
    print(f"chaos: {time.monotonic() - started:.0f} s in all; results in {RESULTS}")
    failed = [
        o
        for o in outcomes
        if o.lost
        or "error" in o.extra
        or o.extra.get("memory_flat") is False
        or o.extra.get("acked_message_ids_not_delivered")
        or o.failed_checks
    ]
    if failed:
        print("chaos: FAILED: " + ", ".join(o.scenario for o in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
