"""A real Prometheus on loopback scrapes a running producer, two consumers and the embedded broker.

Through Prometheus' HTTP API: both consumer replicas are up, exactly one is active
(`sum(streampair_consumer_active) == 1`), and every PromQL expression of the alert rules and the
Grafana dashboard evaluates without error.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from harness import ROOT, Cluster, free_port
from tests.deploy.deploy_helpers import tool
from tests.deploy.prometheus_local import render_loopback_config

DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "streampair.json"
RULES = ROOT / "monitoring" / "rules" / "streampair.rules.yml"


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    # Grafana's built-in variables are not PromQL: give them the values Grafana would.
    return [re.sub(r"\$__rate_interval|\$__interval|\$__range", "1m", e) for e in exprs]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    binary = tool("prometheus", "apt-get install prometheus")
    cluster = Cluster(tmp_path)
    await cluster.start_broker()
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.1")
    c1 = await cluster.start_consumer("consumer-1")
    c2 = await cluster.start_consumer("consumer-2")
    port = free_port()
    config = render_loopback_config(
        {
            "producer": [f"127.0.0.1:{producer.http_port}"],
            "consumer": [f"127.0.0.1:{c1.http_port}", f"127.0.0.1:{c2.http_port}"],
            "broker": [f"127.0.0.1:{cluster.broker_port}"],
        },
        prometheus_port=port,
    )
    (tmp_path / "prometheus.yml").write_text(config)
    prom = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield cluster, f"http://127.0.0.1:{port}"
    finally:
        prom.terminate()
        await prom.wait()
        await cluster.stop()


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body: dict[str, Any] = await response.json()
        body["http_status"] = response.status
        return body


async def wait_value(
    session: aiohttp.ClientSession, base: str, expr: str, want: float, timeout: float = 60
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            body = await query(session, base, expr)
            result = body.get("data", {}).get("result", [])
            last = result
            if result and float(result[0]["value"][1]) == want:
                return
        except (aiohttp.ClientError, OSError):
            pass  # Prometheus is still starting
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr} did not become {want}: {last}")


async def test_prometheus_sees_both_replicas_one_active_and_every_expression_evaluates(
    stack: tuple[Cluster, str],
) -> None:
    _, base = stack
    async with aiohttp.ClientSession() as session:
        await wait_value(session, base, 'count(up{job="consumer"} == 1)', 2)
        await wait_value(session, base, "sum(streampair_consumer_active)", 1)
        await wait_value(session, base, 'up{job="producer"}', 1)
        await wait_value(session, base, 'up{job="broker"}', 1)
        await wait_value(session, base, "sum(streampair_subscription_rejections_total) > bool 0", 1)
        failures = []
        for expr in rule_exprs() + dashboard_exprs():
            body = await query(session, base, expr)
            if body["http_status"] != 200 or body.get("status") != "success":
                failures.append((expr, body.get("error")))
        assert not failures, failures
        assert len(dashboard_exprs()) >= 6
