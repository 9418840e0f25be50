#!/usr/bin/env python3
"""The stories of `make e2e-docker` for one compose variant, against the engine the script started.

scripts/e2e/docker.sh runs this once per variant with DOCKER_HOST and DOCKER_CONFIG set and the
compose files of the variant after `--`. It prints one line per story and, last, one summary line for
the variant (which the script puts in its own summary); the exit status is 1 when a check failed.
Python's standard library only: it runs on the machine's python3, before any venv exists. The log
events it looks for are spelt in one table, EVENTS in scripts/e2e/consumer_logs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from consumer_logs import LogTap, sequence_report
from jaeger_api import trace_spans

STATUS_CMD = (
    "import json, os, urllib.request; print(urllib.request.urlopen("
    "'http://127.0.0.1:%s/status' % os.environ.get('HTTP_PORT', '8000'), timeout=5).read().decode())"
)
# compose/secure.yml: what the producer's role may and may not do, asked from inside its container
# with its own token and CA (Python's standard library only; one JSON object on stdout).
SECURE_PROBE = r"""
import base64, http.client, json, os, ssl
secrets = "/run/secrets/streampair"
token = open(secrets + "/token").read().strip()
trusted = ssl.create_default_context(cafile=secrets + "/ca.pem")
def status(path, token=None, upgrade=False, tls=True, context=trusted):
    if tls:
        conn = http.client.HTTPSConnection("pulsar", 8443, context=context, timeout=15)
    else:
        conn = http.client.HTTPConnection("pulsar", 8080, timeout=15)
    headers = {"Authorization": "Bearer " + token} if token else {}
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        headers.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": key})
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    except ssl.SSLCertVerificationError as error:
        return "certificate: " + error.verify_message
    finally:
        conn.close()
ws = "/ws/v2/{}/persistent/public/default/streamQuickstart"
print(json.dumps({
    "produce with its token": status(ws.format("producer"), token, upgrade=True),
    "produce without a token": status(ws.format("producer"), upgrade=True),
    "consume with the producer's token": status(ws.format("consumer") + "/e2e-probe", token, upgrade=True),
    "health check with the producer's token": status("/admin/v2/brokers/health", token),
    "topic list on the plain port without a token": status("/admin/v2/persistent/public/default", tls=False),
    "TLS without the private CA": status("/", context=ssl.create_default_context()),
}))
"""
SECURE_EXPECTED = {
    "produce with its token": 101,
    "produce without a token": 401,
    "consume with the producer's token": 403,
    "health check with the producer's token": 401,
    "topic list on the plain port without a token": 401,
}
UP_TIMEOUT = 420  # seconds for `up --wait`: Pulsar's JVM on 2 busy cores
STORY_TIMEOUT = 90  # seconds for anything else to happen

T = TypeVar("T")


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = STORY_TIMEOUT) -> T:
    """Poll `probe` until it returns a value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


# ----------------------------------------------------------------------------- docker and compose
class Docker:
    def __init__(
        self, variant: str, files: list[str], env_file: str | None, project_dir: str, log: Path
    ) -> None:
        self.variant = variant
        self.bin = os.environ.get("E2E_DOCKER", "docker")
        self.compose_args = [self.bin, "compose", "--project-directory", project_dir]
        if env_file:
            self.compose_args += ["--env-file", env_file]
        for name in files:
            self.compose_args += ["-f", name]
        self.log = log.open("a", encoding="utf-8")
        self.config: dict[str, Any] = json.loads(self.compose("config", "--format", "json"))
        self.project: str = self.config["name"]

    def run(self, *args: str, check: bool = True, timeout: float = 600, record: bool = True) -> str:
        """Run a docker command; `record` writes it and its output to the log (not the polling)."""
        if args[0] == "docker":
            args = (self.bin, *args[1:])
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if record or result.returncode != 0:
            self.log.write(f"$ {' '.join(args)}\n{result.stdout}{result.stderr}")
            self.log.flush()
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise CheckFailed(f"`{' '.join(args[:6])} ...` failed ({result.returncode}):\n{tail}")
        return result.stdout

    def compose(self, *args: str, timeout: float = 600) -> str:
        return self.run(*self.compose_args, *args, timeout=timeout)

    def containers(self, service: str) -> list[dict[str, Any]]:
        """The running containers of a compose service, as `docker inspect` describes them."""
        args = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"]
        args += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = self.run(*args, record=False).split()
        return json.loads(self.run("docker", "inspect", *ids, record=False)) if ids else []

    def status(self, cid: str) -> dict[str, Any]:
        return json.loads(
            self.run("docker", "exec", cid, "python", "-c", STATUS_CMD, timeout=30, record=False)
        )


def short(container: dict[str, Any]) -> str:
    return str(container["Name"]).lstrip("/").removeprefix("streampair-")


# ----------------------------------------------------------------------------- the stories
class Stories:
    def __init__(self, docker: Docker, services: list[str]) -> None:
        self.d = docker
        self.services = services
        self.tap = LogTap(docker.bin, self._consumers_or_none)

    def _consumers_or_none(self) -> list[dict[str, Any]]:
        try:
            return self.d.containers("consumer")
        except CheckFailed:
            return []  # one vanished between `ps` and `inspect`: the tap asks again

    def up(self, consumers: int) -> float:
        start = time.monotonic()
        self.d.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            str(UP_TIMEOUT),
            "--no-recreate",
            "--scale",
            f"consumer={consumers}",
            *self.services,
            timeout=UP_TIMEOUT + 300,
        )
        return time.monotonic() - start

    def roles(self, expected: list[str]) -> dict[str, str]:
        """Wait until the running consumers' /status roles are exactly `expected` (sorted)."""

        def probe() -> dict[str, str] | None:
            roles = {c["Id"]: str(self.d.status(c["Id"])["role"]) for c in self.d.containers("consumer")}
            return roles if sorted(roles.values()) == sorted(expected) else None

        return wait_for(f"consumer roles {expected}", probe)

    def received_after(self, high: int, count: int = 3) -> None:
        wait_for(
            f"{count} more messages after seq {high}",
            lambda: True if sequence_report(self.tap.events("received"))[1] >= high + count else None,
        )

    def story_up(self) -> None:
        took = self.up(2)
        containers = [c for s in self.services for c in self.d.containers(s)]
        unhealthy = [
            short(c)
            for c in containers
            if c["State"]["Status"] != "running"
            or c["State"].get("Health", {}).get("Status", "healthy") != "healthy"
        ]
        if unhealthy:
            raise CheckFailed(f"not healthy: {', '.join(unhealthy)}")
        roles = self.roles(["active", "standby"])
        names = {c["Id"]: short(c) for c in self.d.containers("consumer")}
        active = names[next(cid for cid, role in roles.items() if role == "active")]
        standby = names[next(cid for cid, role in roles.items() if role == "standby")]
        subscribed = wait_for("one `subscribed` line", lambda: self.tap.events("subscribed") or None)
        busy = wait_for("one standby warning", lambda: self.tap.events("standby") or None)
        said_subscribed, said_busy = [e.container for e in subscribed], [e.container for e in busy]
        if said_subscribed != [active] or said_busy != [standby]:
            raise CheckFailed(
                f"logs disagree with /status: subscribed by {said_subscribed}, standby warning by "
                f"{said_busy}; /status: {active} active, {standby} standby"
            )
        self.received_after(0)
        say(
            f"up --scale consumer=2: {len(containers)} containers healthy in {took:.0f} s; "
            f"{active} logged `subscribed` and is active, {standby} logged the standby warning and is standby"
        )

    def story_kill(self) -> tuple[float, int, int]:
        roles = self.roles(["active", "standby"])
        active_id = next(cid for cid, role in roles.items() if role == "active")
        survivor_id = next(cid for cid in roles if cid != active_id)
        names = {c["Id"]: short(c) for c in self.d.containers("consumer")}
        high = sequence_report(self.tap.events("received"))[1]
        killed_at = time.time()
        self.d.run("docker", "kill", active_id)
        took_over = wait_for(
            f"{names[survivor_id]} to log that it took over",
            lambda: (
                [e for e in self.tap.events("took_over", names[survivor_id]) if e.at >= killed_at] or None
            ),
        )[0]
        takeover = took_over.at - killed_at
        self.roles(["active"])
        self.received_after(high)
        total, top, gaps, duplicates = sequence_report(self.tap.events("received"))
        say(
            f"docker kill {names[active_id]}: {names[survivor_id]} took over after {takeover:.2f} s; "
            f"{total} messages up to seq {top} across replicas: {gaps} gaps, {duplicates} duplicates"
        )
        if gaps:
            raise CheckFailed(f"{gaps} sequence numbers never received")
        return takeover, gaps, duplicates

    def story_scale(self) -> tuple[float, int, int]:
        self.up(3)
        roles = self.roles(["active", "standby", "standby"])
        containers = {c["Id"]: c for c in self.d.containers("consumer")}
        say(
            f"up --scale consumer=3: 1 active, 2 standby ({', '.join(short(c) for c in containers.values())})"
        )
        self.story_prometheus(len(containers))

        active_id = next(cid for cid, role in roles.items() if role == "active")
        active = short(containers[active_id])
        number = {
            cid: int(c["Config"]["Labels"]["com.docker.compose.container-number"])
            for cid, c in containers.items()
        }
        high = sequence_report(self.tap.events("received"))[1]
        started = time.time()
        if number[active_id] == min(number.values()):
            # compose keeps the lowest-numbered replicas: remove the active one ourselves (SIGTERM, as
            # compose does), then let compose remove the rest
            how = f"docker stop + rm {short(containers[active_id])}, then up --scale consumer=1"
            self.d.run("docker", "stop", active_id)
            self.d.run("docker", "rm", active_id)
        else:
            how = f"up --scale consumer=1 (compose stops the active {short(containers[active_id])})"
        self.up(1)
        (survivor,) = self.d.containers("consumer")
        took_over = wait_for(
            f"{short(survivor)} to take over",
            lambda: [e for e in self.tap.events("took_over", short(survivor)) if e.at >= started] or None,
        )[0]
        self.roles(["active"])
        self.received_after(high)
        total, top, gaps, duplicates = sequence_report(self.tap.events("received"))
        # From the SIGTERM of the last replica that held the subscription before the survivor (its
        # `stopping` line), not from our command: when the active one goes first, the other standby
        # may hold the subscription until compose stops it too.
        stopping = [
            e
            for e in self.tap.events("stopping")
            if e.container != short(survivor) and started <= e.at <= took_over.at
        ]
        last = stopping[-1] if stopping else None
        takeover = took_over.at - (last.at if last else started)
        say(
            f"scale down to 1 ({how}): {short(survivor)} took over {takeover:.2f} s after "
            f"{f'{last.container} logged `stopping`' if last else 'the stop began'}"
            f"{f' (after {active})' if last and last.container != active else ''}; "
            f"{total} messages up to seq {top}: {gaps} gaps, {duplicates} duplicates"
        )
        if gaps:
            raise CheckFailed(f"{gaps} sequence numbers never received")
        return takeover, gaps, duplicates

    def story_prometheus(self, consumers: int) -> None:
        if "prometheus" not in self.services:
            return
        host, _, port = self.d.compose("port", "prometheus", "9090").strip().rpartition(":")
        base = f"http://{host}:{port}/api/v1"

        def get(path: str) -> Any:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return json.load(response)["data"]

        ips = {
            svc: sorted(
                net["IPAddress"]
                for c in self.d.containers(svc)
                for net in c["NetworkSettings"]["Networks"].values()
            )
            for svc in ("producer", "consumer", "pulsar")
        }

        def targets_up() -> dict[str, list[str]] | None:
            active = get("/targets?state=active")["activeTargets"]
            up: dict[str, list[str]] = {}
            for target in active:
                if target["health"] == "up":
                    up.setdefault(target["labels"]["job"], []).append(
                        target["labels"]["instance"].rsplit(":", 1)[0]
                    )
            want = {"producer": ips["producer"], "consumer": ips["consumer"], "broker": ips["pulsar"]}
            got = {job: sorted(up.get(job, [])) for job in want}
            return got if got == want and len(active) == sum(map(len, want.values())) + 1 else None

        wait_for(f"Prometheus: every replica a target and up ({consumers} consumers)", targets_up)
        groups = get("/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        broken = [r["name"] for r in rules if r.get("health") == "err"]
        if not rules or broken:
            raise CheckFailed(f"Prometheus rules: {len(rules)} loaded, failing: {broken}")

        def one_active() -> float | None:
            result = get("/query?query=" + urllib.request.quote("sum(streampair_consumer_active)"))["result"]
            value = float(result[0]["value"][1]) if result else None
            return value if value == 1 else None

        wait_for("Prometheus: sum(streampair_consumer_active) == 1", one_active)
        say(
            f"prometheus: {consumers} consumer + 1 producer + {len(ips['pulsar'])} broker targets up, "
            f"{len(rules)} rules loaded, sum(streampair_consumer_active) == 1"
        )

    def story_tracing(self) -> None:
        """compose/tracing.yml: Jaeger returns the trace a consumer's `received` line names, with the
        producer's `send` span and the consumer's `process` span below it."""
        if "jaeger" not in self.services:
            return
        base = "http://" + self.d.compose("port", "jaeger", "16686").strip()
        received = wait_for(
            "a consumer's `received` line with a trace_id",
            lambda: [e for e in self.tap.events("received") if e.record.get("trace_id")] or None,
        )[0]
        trace_id = str(received.record["trace_id"])
        stream = self.d.config["services"]["consumer"]["environment"]["STREAM_NAME"]
        send, process = f"send {stream}", f"process {stream}"

        def both() -> dict[str, dict[str, Any]] | None:
            spans = trace_spans(base, trace_id)  # the SDK exports every 5 s: absent at first
            return spans if {send, process} <= set(spans) else None

        spans = wait_for(f"Jaeger to hold trace {trace_id} with `{send}` and `{process}`", both)
        got = (spans[send]["service"], spans[process]["service"], spans[process]["parent"])
        want = ("streampair-producer", "streampair-consumer", spans[send]["spanID"])
        if got != want or received.record.get("span_id") != spans[process]["spanID"]:
            raise CheckFailed(f"trace {trace_id}: (send's service, process's service, its parent) {got}")
        say(
            f"tracing: {received.container} logged trace {trace_id}; Jaeger holds it: `{send}` "
            f"({got[0]}), `{process}` ({got[1]}) its child"
        )

    def story_secure(self) -> None:
        """compose/secure.yml: the services over pulsar+ssl:// with their own tokens, least privilege, clear
        refusals, a certificate error without the CA, and no token in any log."""
        producer = self.d.containers("producer")[0]["Id"]
        seen = json.loads(self.d.run("docker", "exec", producer, "python", "-c", SECURE_PROBE, timeout=60))
        untrusted = seen.pop("TLS without the private CA")
        if seen != SECURE_EXPECTED or not str(untrusted).startswith("certificate:"):
            raise CheckFailed(f"secured Pulsar answered {seen}, {untrusted!r}; expected {SECURE_EXPECTED}")
        logs = self.d.compose("logs", "--no-color", timeout=120)
        urls = set()
        for line in logs.splitlines():
            record = line.split("| ", 1)[-1]
            if '"event": "connected"' in record:
                # binary: "pulsar+ssl://pulsar:6651 persistent://..."; WebSocket: "wss://.../ws/..."
                urls.add(str(json.loads(record).get("url", "")).split(" ", 1)[0].split("/ws/", 1)[0])
        if urls != {"pulsar+ssl://pulsar:6651"}:
            raise CheckFailed(f"the services connected to {urls}, not only pulsar+ssl://pulsar:6651")
        tokens = {
            self.d.run("docker", "exec", c["Id"], "cat", path, record=False).strip()
            for service, path in (
                ("producer", "/run/secrets/streampair/token"),
                ("consumer", "/run/secrets/streampair/token"),
                ("pulsar", "/pulsar/secrets/admin.token"),
            )
            for c in self.d.containers(service)[:1]
        }
        if len(tokens) != 3 or any(not t or t in logs for t in tokens):
            raise CheckFailed("a token is missing from its volume or was found in `docker compose logs`")
        say(
            "secure: pulsar+ssl://pulsar:6651 only; the producer's role may produce (101), "
            "not consume (403), "
            "not check health (401); no token 401, the plain port 401, no CA: certificate error; "
            f"3 tokens, none in {len(logs.splitlines())} log lines"
        )

    def save_logs(self, prefix: Path) -> None:
        """For the record: each consumer's log as followed (<log>-<container>.log) and the other
        services' logs (<log>-services.log)."""
        with self.tap.lock:
            for name, lines in self.tap.lines.items():
                Path(f"{prefix}-{name}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        others = [s for s in self.services if s != "consumer"]
        logs = self.d.run(
            *self.d.compose_args, "logs", "--no-color", "--timestamps", *others, check=False, record=False
        )
        Path(f"{prefix}-services.log").write_text(logs, encoding="utf-8")

    def story_down(self) -> None:
        self.d.compose("down", "-v", "--remove-orphans", "--timeout", "15")
        label = f"label=com.docker.compose.project={self.d.project}"
        left = {
            kind: self.d.run("docker", kind, "ls", "-q", "--filter", label).split()
            for kind in ("container", "network", "volume")
        }
        left["container"] = self.d.run("docker", "ps", "-aq", "--filter", label).split()
        if any(left.values()):
            raise CheckFailed(f"left behind by down -v: {left}")
        say("down -v: no container, network or volume left")


def interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    # docker.sh runs this in the background (where bash ignores SIGINT) and stops it with SIGTERM
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--project-directory", required=True)
    parser.add_argument("--env-file")
    parser.add_argument("--skip", action="append", default=[], help="service not to start (no image)")
    parser.add_argument("--log", default=".cache/e2e/logs/stories.log")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    try:
        docker = Docker(args.variant, args.files, args.env_file, args.project_directory, Path(args.log))
        docker.compose("down", "-v", "--remove-orphans", "--timeout", "5")  # a clean slate
    except CheckFailed as error:
        say(f"FAILED: {error}")
        print(f"{args.variant} FAILED (compose files)")
        return 1
    except KeyboardInterrupt:
        return 130
    # services in a profile (Pulsar with compose/macrometa.yml) are not part of the default set
    services = [
        name
        for name, svc in docker.config["services"].items()
        if name not in args.skip and not svc.get("profiles")
    ]
    stories = Stories(docker, services)
    step = "up"
    try:
        stories.story_up()
        step = "tracing"
        stories.story_tracing()
        if args.variant == "secure":
            step = "secure"
            stories.story_secure()
        step = "docker kill"
        kill = stories.story_kill()
        step = "scale"
        scale = stories.story_scale()
        stories.tap.close()
        stories.save_logs(Path(args.log).with_suffix(""))
        step = "down"
        stories.story_down()
    except KeyboardInterrupt:
        stories.tap.close()
        say(f"interrupted at {step}")  # docker.sh takes the stack down
        print(f"{args.variant} interrupted at {step}")
        return 130
    except (CheckFailed, subprocess.SubprocessError, OSError, KeyError, ValueError) as error:
        say(f"FAILED at {step}: {error}")
        for name, lines in sorted(stories.tap.lines.items()):
            say(f"--- last log lines of {name}:")
            for line in list(lines)[-8:]:
                say(f"    {line[:300]}")
        stories.tap.close()
        stories.save_logs(Path(args.log).with_suffix(""))
        say(f"--- all logs: {Path(args.log).with_suffix('')}-*.log")
        try:
            docker.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        except CheckFailed as cleanup_error:
            say(f"cleanup failed too: {cleanup_error}")
        print(f"{args.variant} FAILED at {step}")
        return 1
    print(
        f"{args.variant} ok (takeover {kill[0]:.2f} s, {kill[1]} gaps, {kill[2]} duplicates; "
        f"scale-down takeover {scale[0]:.2f} s, {scale[1]} gaps, {scale[2]} duplicates)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
