"""monitoring/: Prometheus config, the alert rules and their unit tests, Grafana provisioning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from deploy_helpers import ROOT, load_yaml, run, tool
from prometheus_local import render_loopback_config

MON = ROOT / "monitoring"
RULES = MON / "rules" / "streampair.rules.yml"
REQUIRED_ALERTS = {
    "NoActiveConsumer",
    "MultipleActiveConsumers",
    "ProducerDown",
    "ClientDisconnected",
    "PublishErrors",
    "ConsumerLag",
    "StandbyMissing",
    "MessagesDeadLettered",
    "HandlerErrors",
    "ConsumerBlocked",
    "MalformedProperties",
}
PROMTOOL_HINT = "apt-get install prometheus"


def alerts() -> list[dict]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_config() -> None:
    promtool = tool("promtool", PROMTOOL_HINT)
    result = run([promtool, "check", "config", str(MON / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    promtool = tool("promtool", PROMTOOL_HINT)
    files = sorted(str(p) for p in (MON / "rules").glob("*.yml"))
    result = run([promtool, "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    promtool = tool("promtool", PROMTOOL_HINT)
    files = sorted(str(p) for p in (MON / "tests").glob("*.yml"))
    assert files
    result = run([promtool, "test", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_are_complete() -> None:
    rules = alerts()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{rule['alert']}: no for:"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    multi = next(r for r in rules if r["alert"] == "MultipleActiveConsumers")
    assert 'streampair_consumer_active{subscription_type="Exclusive"}' in multi["expr"]
    assert "sum by (subscription)" in multi["expr"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (MON / "tests").glob("*.yml"):
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alerts()}
    assert names - fired == set(), "alerts never fired by a test"
    assert names - quiet == set(), "alerts never shown quiet by a test"


def test_scrape_config_discovers_every_replica() -> None:
    config = load_yaml(MON / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("producer", "consumer"):
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd == {"names": [name], "type": "A", "port": 8000, "refresh_interval": "15s"}
        assert "static_configs" not in jobs[name]
    assert jobs["broker"]["dns_sd_configs"][0]["port"] == 8080
    assert config["rule_files"][0].startswith("rules/")


def test_loopback_config_is_valid(tmp_path: Path) -> None:
    text = render_loopback_config(
        {"producer": ["127.0.0.1:18001"], "consumer": ["127.0.0.1:18002", "127.0.0.1:18003"]},
        prometheus_port=19090,
    )
    assert "dns_sd_configs" not in text
    path = tmp_path / "prometheus.yml"
    path.write_text(text, encoding="utf-8")
    promtool = tool("promtool", PROMTOOL_HINT)
    result = run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ValueError):
        render_loopback_config({"nosuchjob": []})


def test_grafana_provisioning() -> None:
    grafana = MON / "grafana"
    (datasource,) = load_yaml(grafana / "provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(grafana / "provisioning/dashboards/streampair.yml")["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    compose = load_yaml(ROOT / "docker-compose.yml")
    assert (
        "./monitoring/grafana/dashboards:/etc/grafana/dashboards:ro"
        in compose["services"]["grafana"]["volumes"]
    )

    dashboard = json.loads((grafana / "dashboards/streampair.json").read_text(encoding="utf-8"))
    exprs = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    text = "\n".join(exprs)
    for metric in (
        "streampair_messages_published_total",
        "streampair_messages_received_total",
        "streampair_consumer_role",
        "streampair_consumer_active",
        "streampair_subscription_rejections_total",
        "streampair_end_to_end_latency_seconds_bucket",
        "streampair_publish_errors_total",
        "streampair_connection_attempts_total",
        "streampair_handler_errors_total",
        "streampair_messages_dead_lettered_total",
        "streampair_malformed_properties_total",
        "streampair_sequence_resets_total",
        "streampair_consumer_blocked",
    ):
        assert metric in text, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # The "Firing alerts" stat counts every alert of the rule file, not a stale list of them.
    (firing,) = [p for p in dashboard["panels"] if p["title"] == "Firing alerts"]
    listed = re.search(r'alertname=~"([^"]+)"', firing["targets"][0]["expr"])
    assert listed is not None
    assert set(listed.group(1).split("|")) == {r["alert"] for r in alerts()}
