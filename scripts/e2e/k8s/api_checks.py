#!/usr/bin/env python3
"""Every overlay against a real Kubernetes API server (make e2e-k8s-api).

    api_checks.py --kubeconfig K OVERLAY_DIR...

For each overlay: its Namespace objects are created for real (a dry-run Namespace would not exist for
the objects after it), then the whole rendering is applied with --dry-run=server: the API server
validates every object, custom resources included (the prometheus-operator CRDs are installed). Then
each pod template (Deployment, StatefulSet) becomes a Pod created with --dry-run=server in that
namespace, which enforces the `restricted` Pod Security Standard: PodSecurity admission only warns
about workload objects, it enforces on Pods. A negative control, the consumer's template made
privileged, must be refused.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from typing import Any

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Checks:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.failed: list[str] = []
        self.passed = 0

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", "--kubeconfig", self.kubeconfig, *args]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)

    def check(self, name: str, ok: bool, detail: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)


def rendered(checks: Checks, overlay: str) -> list[dict[str, Any]]:
    kustomized = checks.kubectl("kustomize", overlay)
    if kustomized.returncode != 0:
        raise RuntimeError(kustomized.stderr)
    # kubectl turns the YAML stream into JSON documents, one after the other: no YAML library needed
    as_json = checks.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", stdin=kustomized.stdout)
    if as_json.returncode != 0:
        raise RuntimeError(as_json.stderr)
    decoder, text, position = json.JSONDecoder(), as_json.stdout, 0
    items: list[dict[str, Any]] = []
    while text[position:].strip():
        document, end = decoder.raw_decode(
            text, position + len(text[position:]) - len(text[position:].lstrip())
        )
        items.extend(document["items"] if document.get("kind") == "List" else [document])
        position = end
    return items


def as_pod(workload: dict[str, Any]) -> dict[str, Any]:
    """The Pod a controller would create from this workload's template (StatefulSet claims included)."""
    template = copy.deepcopy(workload["spec"]["template"])
    name = workload["metadata"]["name"]
    spec = template["spec"]
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        claim_name = claim["metadata"]["name"]
        spec.setdefault("volumes", []).append(
            {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-0"}}
        )
    metadata = template.get("metadata", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-template-check",
            "namespace": workload["metadata"].get("namespace", "default"),
            "labels": metadata.get("labels", {}),
            "annotations": metadata.get("annotations", {}),
        },
        "spec": spec,
    }


def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning")]


def check_overlay(checks: Checks, overlay: str) -> dict[str, Any] | None:
    name = overlay.rstrip("/").rsplit("/", 1)[-1]
    objects = rendered(checks, overlay)
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    # For real: the namespaces, and the ServiceAccounts Pods need to pass the ServiceAccount admission
    # plugin (the `default` one is what kube-controller-manager would create; it does not run here).
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"] + [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": n["metadata"]["name"]},
        }
        for n in namespaces
    ]
    for obj in namespaces + accounts:
        created = checks.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
        if created.returncode != 0:
            checks.check(f"{name}: {obj['kind']} {obj['metadata']['name']}", False, created.stderr.strip())
            return None
    applied = checks.kubectl("apply", "--dry-run=server", "-k", overlay)
    problems = warnings(applied) or ([applied.stderr.strip()] if applied.returncode != 0 else [])
    kinds = sorted({o["kind"] for o in objects})
    checks.check(
        f"{name}: apply --dry-run=server",
        not problems,
        "; ".join(problems) or f"{len(objects)} objects accepted ({', '.join(kinds)})",
    )
    template_pod = None
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        pod = as_pod(workload)
        namespace = pod["metadata"]["namespace"]
        labels: dict[str, str] = next(
            (n["metadata"].get("labels", {}) for n in namespaces if n["metadata"]["name"] == namespace), {}
        )
        enforce = labels.get("pod-security.kubernetes.io/enforce")
        result = checks.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
        problems = warnings(result) or ([result.stderr.strip()] if result.returncode != 0 else [])
        checks.check(
            f"{name}: {workload['kind'].lower()}/{workload['metadata']['name']} Pod admitted",
            enforce == "restricted" and not problems,
            "; ".join(problems) or f"namespace {namespace} enforce={enforce}",
        )
        if workload["metadata"]["name"] == "consumer":
            template_pod = pod
    return template_pod


def negative_control(checks: Checks, pod: dict[str, Any]) -> None:
    bad = copy.deepcopy(pod)
    bad["metadata"]["name"] = "negative-control"
    bad["spec"]["containers"][0]["securityContext"]["privileged"] = True
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    result = checks.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(bad))
    refused = result.returncode != 0 and 'violates PodSecurity "restricted' in result.stderr
    checks.check(
        "negative control refused",
        refused,
        result.stderr.strip()[:200]
        if refused
        else f"not refused by PodSecurity: {result.stderr or result.stdout}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("overlays", nargs="+")
    args = parser.parse_args()
    checks = Checks(args.kubeconfig)
    consumer_pod = None
    for overlay in args.overlays:
        try:
            consumer_pod = check_overlay(checks, overlay) or consumer_pod
        except RuntimeError as error:
            checks.check(overlay, False, str(error).strip())
    if consumer_pod is None:
        checks.check("negative control refused", False, "no consumer template found to derive it from")
    else:
        negative_control(checks, consumer_pod)
    total = checks.passed + len(checks.failed)
    print(
        f"api checks: {checks.passed}/{total} passed"
        + (f"; failed: {checks.failed}" if checks.failed else "")
    )
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
