#!/usr/bin/env python3
"""The streampair story in real Pods (make e2e-k8s): run on the node of the one-node cluster.

    checks.py --kubeconfig K --pod-logs DIR --overlay k8s/overlays/demo --results OUT.json

Applies the overlay (the prometheus-operator CRDs are installed), then checks, each printed PASS/FAIL/NOTE:
workloads available with passing probes under an enforced `restricted` Pod Security namespace (and a
refused negative control); one active + one standby consumer; the standby takes over when the active
Pod is deleted (gracefully and with --grace-period=0 --force), during `rollout restart` and a drain
that the PodDisruptionBudget stops at one replica; three replicas give one active and two standbys;
NetworkPolicy enforced or not (said either way); no `seq` lost over all of it. Roles come from each
Pod's /status, takeover times from the Pods' own log lines (container runtime timestamps).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kube import Kube, KubectlError, Pod, http_json, poll, role
from log_events import RECEIVED, STOPPING, TOOK_OVER, LogEvent
from podlogs import PodLogs
from report import Report, seq_report

CONSUMER = "consumer"
SETTLE_SECONDS = 120


def live(kube: Kube) -> list[Pod]:
    return [p for p in kube.pods(CONSUMER) if not p.deleting]


def settled(kube: Kube, replicas: int, timeout: float = SETTLE_SECONDS) -> dict[str, str] | None:
    """Wait until exactly `replicas` consumer Pods exist (none still terminating), all Ready, one
    active and the rest standby."""

    def pair() -> dict[str, str] | None:
        pods = kube.pods(CONSUMER)
        if len(pods) != replicas or not all(p.ready and not p.deleting for p in pods):
            return None
        roles = {p.name: str(role(p)) for p in pods}
        values = list(roles.values())
        if values.count("active") == 1 and values.count("standby") == replicas - 1:
            return roles
        return None

    found: dict[str, str] | None = poll(pair, timeout, every=0.25)
    return found


def first_takeover(events: list[LogEvent], since: float, other_than: str | None = None) -> LogEvent | None:
    """The earliest takeover after `since` (events come per Pod, not in time order)."""
    found = [e for e in events if e.kind == TOOK_OVER and e.at >= since and e.pod != other_than]
    return min(found, key=lambda e: e.at, default=None)


def stopping(events: list[LogEvent], pod: str, since: float) -> LogEvent | None:
    """The Pod's own "stopping" line: when its container got SIGTERM."""
    found = [e for e in events if e.kind == STOPPING and e.pod == pod and e.at >= since]
    return min(found, key=lambda e: e.at, default=None)


def gap_free(logs: PodLogs) -> bool:
    ok, _ = seq_report(logs.snapshot(), 0)
    return ok


def delivery_pause(events: list[LogEvent], since: float) -> float | None:
    """Longest time between two consecutive deliveries after `since`: the gap a takeover causes."""
    times = sorted(e.at for e in events if e.kind == RECEIVED and e.at >= since - 2)
    return max((b - a for a, b in itertools.pairwise(times)), default=None)


# --------------------------------------------------------------------------------------- steps
def deploy(kube: Kube, rep: Report, overlay: str) -> bool:
    started = time.time()
    applied = kube.result("apply", "-k", overlay)
    warnings = [line for line in applied.stderr.splitlines() if line.startswith("Warning")]
    ok = applied.returncode == 0 and not warnings
    rep.check(
        "apply",
        ok,
        f"{overlay} applied ({len(applied.stdout.splitlines())} objects)"
        + (f"; {warnings or applied.stderr.strip()}" if not ok else ", no admission warnings"),
    )
    if not ok:
        return False
    for workload in ("statefulset/pulsar", "deployment/producer", "deployment/consumer"):
        done = kube.result("rollout", "status", workload, "--timeout=300s", timeout=320)
        if done.returncode != 0:
            rep.check(
                "workloads available", False, f"{workload}: {done.stderr.strip() or done.stdout.strip()}"
            )
            return False
    rep.facts["ready_after_apply_s"] = round(time.time() - started, 1)
    available = kube.json("get", "deployments")["items"]
    names = [d["metadata"]["name"] for d in available if _available(d)]
    rep.check(
        "workloads available",
        len(names) == len(available),
        f"Deployments available: {', '.join(names)}; statefulset/pulsar ready; "
        f"{rep.facts['ready_after_apply_s']}s after apply",
    )
    return True


def _available(deployment: dict[str, Any]) -> bool:
    conditions = deployment.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def probes_and_security(kube: Kube, rep: Report) -> None:
    pods = kube.json("get", "pods")["items"]
    problems = []
    for pod in pods:
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            missing = [p for p in ("startupProbe", "livenessProbe", "readinessProbe") if p not in container]
            if missing and not name.startswith("pulsar"):
                problems.append(f"{name}: no {missing}")
        statuses = pod["status"].get("containerStatuses", [])
        if not all(s.get("ready") for s in statuses) or any(s.get("restartCount", 0) for s in statuses):
            problems.append(f"{name}: not ready or restarted")
    rep.check(
        "probes pass",
        not problems,
        "; ".join(problems) or f"{len(pods)} Pods Ready, startup/liveness/readiness probes, 0 restarts",
    )
    labels = kube.json("get", "namespace", kube.namespace)["metadata"]["labels"]
    enforce = labels.get("pod-security.kubernetes.io/enforce")
    refused = kube.result(
        "run",
        "psa-negative-control",
        "--image=ghcr.io/streampair/consumer:0.1.0",
        "--image-pull-policy=Never",
        "--privileged",
        "--dry-run=server",
    )
    said = refused.stderr.strip()
    ok = enforce == "restricted" and refused.returncode != 0 and 'violates PodSecurity "restricted' in said
    rep.check(
        "restricted Pod Security enforced",
        ok,
        f"namespace enforce={enforce}; every Pod above admitted; a privileged Pod refused: {said[:160]}",
    )


def one_active_one_standby(kube: Kube, rep: Report) -> None:
    roles = settled(kube, 2)
    rep.check(
        "one active, one standby", roles is not None, f"2 Ready consumer Pods, roles from /status: {roles}"
    )


FORCE = ["--grace-period=0", "--force"]


def takeover_on_delete(kube: Kube, logs: PodLogs, rep: Report, name: str, extra: list[str]) -> None:
    before = settled(kube, 2)
    if before is None:
        rep.check(name, False, "no active + standby pair to start from")
        return
    active = next(n for n, r in before.items() if r == "active")
    standby = next(n for n, r in before.items() if r == "standby")
    started = time.time()
    kube.run("delete", "pod", active, "--wait=false", *extra)
    logs.wait_for(lambda events: first_takeover(events, started, active) is not None, 30)
    event = first_takeover(logs.snapshot(), started, active)
    confirmed = poll(lambda: any(p.name == standby and role(p) == "active" for p in live(kube)), 10)
    after = settled(kube, 2)
    if event is None or event.pod != standby:
        rep.check(name, False, f"{active} deleted; standby {standby} did not log a takeover within 30 s")
        return
    took = event.at - started
    stop = stopping(logs.snapshot(), active, started)
    since_sigterm = f" ({event.at - stop.at:.2f}s after the Pod logged SIGTERM)" if stop else ""
    pause = delivery_pause(logs.snapshot(), started)
    rep.takeovers[name.removesuffix(" active")] = round(took, 2)
    no_gap = gap_free(logs)
    rep.check(
        name,
        bool(confirmed) and after is not None and no_gap,
        f"active {active} deleted ({' '.join(extra) or 'graceful'}): standby {standby} took over "
        f"{took:.2f}s after kubectl delete{since_sigterm}, its /status says active; longest pause "
        f"between deliveries {pause or 0:.2f}s; replacement Ready as standby: {after is not None}; "
        f"seq without gap: {no_gap}",
    )


def rollout_restart(kube: Kube, logs: PodLogs, rep: Report) -> None:
    before = settled(kube, 2) or {}
    active = next((n for n, r in before.items() if r == "active"), "")
    started = time.time()
    kube.run("rollout", "restart", "deployment/consumer")
    done = kube.result("rollout", "status", "deployment/consumer", "--timeout=180s", timeout=200)
    took = time.time() - started
    after = settled(kube, 2)
    fresh = after is not None and bool(before) and not set(after) & set(before)
    events = logs.snapshot()
    event, stop = first_takeover(events, started, active), stopping(events, active, started)
    handover = ""
    if event is not None and stop is not None:
        rep.takeovers["rollout"] = round(event.at - stop.at, 2)
        handover = f"; {event.pod} took over {event.at - stop.at:.2f}s after the old active logged SIGTERM"
    no_gap = gap_free(logs)
    rep.check(
        "rollout restart",
        done.returncode == 0 and fresh and event is not None and no_gap,
        f"completed in {took:.1f}s; two new Pods, one active one standby: {after}{handover}; "
        f"longest pause between deliveries {delivery_pause(events, started) or 0:.2f}s; "
        f"seq without gap: {no_gap}",
    )


def drain(kube: Kube, logs: PodLogs, rep: Report, node: str) -> None:
    before = settled(kube, 2) or {}
    started = time.time()
    run = kube.result(
        "drain",
        node,
        "--pod-selector=app.kubernetes.io/name=consumer",
        "--delete-emptydir-data",
        "--ignore-daemonsets",
        "--timeout=20s",
        timeout=60,
    )
    out = run.stdout + run.stderr
    evicted = sorted({line.split()[0] for line in out.splitlines() if line.rstrip().endswith("evicted")})
    refused = "violate the pod's disruption budget" in out
    pdb = kube.json("get", "pdb", "consumer")["status"]
    still = [p.name for p in live(kube) if p.ready]
    kube.run("uncordon", node)
    after = settled(kube, 2)
    gone = evicted[0].split("/")[-1] if evicted else ""
    events = logs.snapshot()
    event, stop = first_takeover(events, started, gone), stopping(events, gone, started)
    handover = f" (it was the {before.get(gone)})"
    if before.get(gone) == "active" and event is not None and stop is not None:
        rep.takeovers["drain"] = round(event.at - stop.at, 2)
        handover = f" (the active: {event.pod} took over {event.at - stop.at:.2f}s after its SIGTERM)"
    ok = len(evicted) == 1 and refused and run.returncode != 0 and len(still) == 1 and gap_free(logs)
    rep.check(
        "PodDisruptionBudget",
        ok,
        f"kubectl drain evicted {gone}{handover} and was refused the second "
        f"({'disruption budget' if refused else 'NOT refused'}) until it timed out; while cordoned: "
        f"{len(still)} Ready, disruptionsAllowed={pdb.get('disruptionsAllowed')}; after uncordon one "
        f"active + one standby: {after is not None}",
    )


def scale_three(kube: Kube, rep: Report) -> None:
    kube.run("scale", "deployment/consumer", "--replicas=3")
    roles = settled(kube, 3)
    values = sorted((roles or {}).values())
    rep.check("scale to 3", values == ["active", "standby", "standby"], f"roles: {roles}")
    kube.run("scale", "deployment/consumer", "--replicas=2")
    settled(kube, 2)


PROBE = (
    "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print('open')"
)


LISTENING = (  # the TCP ports a Pod listens on on every address (or its own), from /proc/net/tcp{,6}
    "ports = set()\n"
    "for f in ('/proc/net/tcp', '/proc/net/tcp6'):\n"
    "    for line in open(f).read().splitlines()[1:]:\n"
    "        local, state = line.split()[1], line.split()[3]\n"
    "        address, port = local.rsplit(':', 1)\n"
    "        if state == '0A' and not address.startswith(('0100007F', '00000000000000000000000001000000')):\n"
    "            ports.add(int(port, 16))\n"
    "print(' '.join(map(str, sorted(ports))))\n"
)


def open_unlisted_port(kube: Kube) -> tuple[str, int] | None:
    """(the Pulsar Pod's IP, a port it listens on, not on loopback only) other than the policies'
    8080 and 6650, e.g. the embedded bookie's. Connected to from inside that Pod first (a connection
    to its own IP never crosses the bridge, so no policy applies): a refusal later means the policy."""
    pulsar = kube.pods("pulsar")
    if not pulsar or pulsar[0].ip is None:
        return None
    pod, ip = pulsar[0].name, pulsar[0].ip
    listed = kube.result("exec", pod, "--", "python3", "-c", LISTENING, timeout=30)
    if listed.returncode != 0:
        return None
    for port in (int(p) for p in listed.stdout.split() if int(p) not in (8080, 6650)):
        if kube.result("exec", pod, "--", "python3", "-c", PROBE, ip, str(port), timeout=30).returncode == 0:
            return ip, port
    return None


def network_policy(kube: Kube, rep: Report, enforcer: str | None) -> None:
    """The project's policy between real Pods: what must connect and what must not."""
    producer = kube.pods("producer")[0]
    consumer = live(kube)[0]

    def connects(pod: Pod, host: str, port: int) -> bool:
        return kube.result("exec", pod.name, "--", "python", "-c", PROBE, host, str(port)).returncode == 0

    cases = [  # (from, to, port, allowed by the policies)
        (producer, "consumer", str(consumer.ip), 8000, False),  # producer egress: DNS and Pulsar only
        (consumer, "pulsar", "pulsar", 8080, True),  # by name: DNS egress works too
        (producer, "pulsar", "pulsar", 8080, True),
        (producer, "pulsar", "pulsar", 6650, True),  # the binary protocol
    ]
    closed = open_unlisted_port(kube)
    if closed is not None:  # an open port of an allowed pod that the policies do not list
        cases.append((producer, "pulsar", closed[0], closed[1], False))
    outcomes = [
        (f"{p.name.split('-')[0]} -> {name}:{port}", connects(p, host, port), ok)
        for p, name, host, port, ok in cases
    ]
    said = ", ".join(f"{what} {'connected' if got else 'refused'}" for what, got, _ in outcomes)
    if closed is None:
        said += " (no other open port of the pulsar Pod found: no port-level case)"
    enforced = all(got == wanted for _, got, wanted in outcomes)
    if enforcer:
        rep.facts["network_policy"] = (
            f"enforced by {enforcer}" if enforced else f"NOT as written ({enforcer})"
        )
        rep.check("NetworkPolicy enforced", enforced, f"{enforcer}: {said}")
    else:
        rep.facts["network_policy"] = "NOT enforced (E2E_K8S_NETPOL=none: bridge CNI alone)"
        rep.note("NetworkPolicy NOT enforced", f"bridge CNI without a policy engine: {said}")


def no_seq_lost(kube: Kube, logs: PodLogs, rep: Report) -> None:
    producer = kube.pods("producer")[0]
    status = http_json(f"http://{producer.ip}:8000/status") or {}
    last = int(status.get("counters", {}).get("last_seq", 0) or 0)

    def caught_up(events: list[LogEvent]) -> bool:
        return max((e.seq or 0 for e in events if e.kind == RECEIVED), default=0) >= last

    logs.wait_for(caught_up, 15)
    ok, detail = seq_report(logs.snapshot(), last)
    rep.check("no seq lost", ok, detail)


# --------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--pod-logs", type=Path, required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--namespace", default="streampair")
    parser.add_argument("--node", default="rk8s")
    parser.add_argument("--netpol-enforcer", default=None)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--save-logs", type=Path, default=None, help="keep every consumer log line here")
    args = parser.parse_args()
    kube = Kube(args.kubeconfig, args.namespace)
    rep = Report()
    logs = PodLogs(args.pod_logs, args.namespace, CONSUMER, save_dir=args.save_logs).start()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("probes and Pod Security", lambda: probes_and_security(kube, rep)),
        ("one active, one standby", lambda: one_active_one_standby(kube, rep)),
        ("delete active", lambda: takeover_on_delete(kube, logs, rep, "delete active", [])),
        ("force delete active", lambda: takeover_on_delete(kube, logs, rep, "force delete active", FORCE)),
        ("rollout restart", lambda: rollout_restart(kube, logs, rep)),
        ("PodDisruptionBudget", lambda: drain(kube, logs, rep, args.node)),
        ("scale to 3", lambda: scale_three(kube, rep)),
        ("NetworkPolicy", lambda: network_policy(kube, rep, args.netpol_enforcer)),
        ("no seq lost", lambda: no_seq_lost(kube, logs, rep)),
    ]
    try:
        if deploy(kube, rep, args.overlay):
            for name, step in steps:
                try:
                    step()
                except (KubectlError, TimeoutError, OSError) as error:
                    rep.check(name, False, f"{type(error).__name__}: {error}")
    finally:
        logs.stop()
        rep.facts["consumer_log_lines"] = logs.lines
        args.results.write_text(json.dumps(rep.as_dict(), indent=2), encoding="utf-8")
    return 0 if rep.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
