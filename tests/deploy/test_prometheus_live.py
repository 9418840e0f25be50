"""A real Prometheus on loopback scrapes a running producer, two consumers and the embedded broker.

Through Prometheus' HTTP API: both consumer replicas are up, exactly one is active
(`sum(streampair_consumer_active) == 1`), and every PromQL expression of the alert rules and the
Grafana dashboard evaluates without error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from harness import ROOT, Cluster, Service, free_port, is_event
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
    return list(alert_exprs().values())


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule.get("alert") or rule["record"]: rule["expr"] for group in groups for rule in group["rules"]}


@asynccontextmanager
async def prometheus_over(cluster: Cluster, tmp_path: Path, consumers: list[Service]) -> AsyncIterator[str]:
    """A real Prometheus scraping the cluster's producer, these consumers and the broker every second."""
    binary = tool("prometheus", "apt-get install prometheus")
    port = free_port()
    producers = [s for s in cluster.services if s.module == "producer"]
    config = render_loopback_config(
        {
            "producer": [f"127.0.0.1:{p.http_port}" for p in producers],
            "consumer": [f"127.0.0.1:{c.http_port}" for c in consumers],
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
        yield f"http://127.0.0.1:{port}"
    finally:
        prom.terminate()
        await prom.wait()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    tool("prometheus", "apt-get install prometheus")
    cluster = Cluster(tmp_path)
    try:
        await cluster.start_broker()
        await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.1")
        c1 = await cluster.start_consumer("consumer-1")
        c2 = await cluster.start_consumer("consumer-2")
        async with prometheus_over(cluster, tmp_path, [c1, c2]) as base:
            yield cluster, base
    finally:
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


async def wait_series(
    session: aiohttp.ClientSession, base: str, expr: str, count: int = 1, timeout: float = 60
) -> list[dict[str, Any]]:
    """The result of `expr` once it has at least `count` series."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            result: list[dict[str, Any]] = (
                (await query(session, base, expr)).get("data", {}).get("result", [])
            )
            if len(result) >= count:
                return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr} had fewer than {count} series for {timeout}s")


async def test_the_poison_alerts_see_the_services_real_series(tmp_path: Path) -> None:
    """Each new alert's expression (without its `for:`) finds what real services export when
    poison, malformed and oversized messages arrive, and ClientDisconnected stays quiet for a
    blocked consumer and for a consumer's dead-letter producer."""
    tool("prometheus", "apt-get install prometheus")
    alerts = alert_exprs()
    cluster = Cluster(tmp_path)
    try:
        await cluster.start_broker()
        poisoned = await cluster.start_consumer(
            "consumer-1",
            FAIL_ON_PROPERTY="poison",
            MAX_DELIVERY_ATTEMPTS="3",
            RETRY_DELAY_SECONDS="0.05",
        )
        # Its own subscription, a frame limit under the big message below: it will be blocked.
        small = await cluster.start_consumer(
            "consumer-small", SUBSCRIPTION_NAME="small-frames", STREAM_MAX_FRAME_BYTES="65536"
        )
        for consumer in (poisoned, small):
            await consumer.wait_for(is_event("subscribed"))
        producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="1")
        async with (
            prometheus_over(cluster, tmp_path, [poisoned, small]) as base,
            aiohttp.ClientSession() as session,
        ):
            # Born at 0 (not at the first malformed message), so that increase() sees the first one.
            seq_zero = 'streampair_malformed_properties_total{job="consumer", property="seq"} == 0'
            await wait_series(session, base, seq_zero, count=2)
            assert (await producer.post_json("/messages", {"payload": "m", "properties": {"seq": "²"}}))[
                0
            ] == 201
            for i in range(25):
                assert (
                    await producer.post_json("/messages", {"payload": f"p{i}", "properties": {"poison": "1"}})
                )[0] == 201
            assert (await producer.post_json("/messages", {"payload": "x" * 200_000}))[0] == 201
            instance = {c.name: f"127.0.0.1:{c.http_port}" for c in (poisoned, small)}

            def instances(result: list[dict[str, Any]]) -> set[str]:
                return {r["metric"]["instance"] for r in result}

            malformed = await wait_series(session, base, alerts["MalformedProperties"], count=2)
            assert {(r["metric"]["instance"], r["metric"]["property"]) for r in malformed} == {
                (instance["consumer-1"], "seq"),
                (instance["consumer-small"], "seq"),
            }
            assert instances(await wait_series(session, base, alerts["MessagesDeadLettered"])) == {
                instance["consumer-1"]
            }
            assert instances(await wait_series(session, base, alerts["HandlerErrors"])) == {
                instance["consumer-1"]
            }
            assert instances(await wait_series(session, base, alerts["ConsumerBlocked"])) == {
                instance["consumer-small"]
            }
            # The dead-letter producer is up: both endpoints of consumer-1 are connected.
            await wait_series(
                session, base, 'streampair_broker_connected{endpoint="producer", job="consumer"} == 1'
            )
            disconnected = (await query(session, base, alerts["ClientDisconnected"]))["data"]["result"]
            assert not instances(disconnected) & set(instance.values()), disconnected
    finally:
        await cluster.stop()
