"""kubectl against the one-node cluster, and the services' /status read from the node."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Pod:
    name: str
    ip: str | None
    ready: bool
    phase: str
    deleting: bool
    restarts: int


@dataclass
class Kube:
    kubeconfig: str
    namespace: str

    def run(self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
        cmd = ["kubectl", "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
        if check and done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def result(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def pods(self, app: str) -> list[Pod]:
        items = self.json("get", "pods", "-l", f"app.kubernetes.io/name={app}")["items"]
        out = []
        for item in items:
            status = item.get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            containers = status.get("containerStatuses", [])
            out.append(
                Pod(
                    name=item["metadata"]["name"],
                    ip=status.get("podIP"),
                    ready=conditions.get("Ready") == "True",
                    phase=status.get("phase", ""),
                    deleting="deletionTimestamp" in item["metadata"],
                    restarts=sum(c.get("restartCount", 0) for c in containers),
                )
            )
        return sorted(out, key=lambda p: p.name)


def http_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET a JSON document; None when the server cannot be reached or answers with an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data: dict[str, Any] = json.load(answer)
            return data
    except (OSError, urllib.error.URLError, ValueError):
        return None


def role(pod: Pod, port: int = 8000) -> str | None:
    """The consumer's role from its /status (active | standby | connecting), read at the Pod's IP."""
    if pod.ip is None:
        return None
    status = http_json(f"http://{pod.ip}:{port}/status")
    return None if status is None else str(status.get("role"))


def poll(condition: Any, timeout: float, every: float = 0.1) -> Any:
    """Return condition()'s first truthy value within timeout, else None. Used only for state that
    has no event to wait on (HTTP endpoints of Pods, API objects)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)
