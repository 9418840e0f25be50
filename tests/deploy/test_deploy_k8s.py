"""k8s/: every overlay renders, validates against the Kubernetes schemas and keeps its promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import ROOT, load_yaml, load_yaml_all, run, tool

K8S = ROOT / "k8s"
OVERLAYS = ("demo", "pulsar-cluster", "macrometa")
KUBE_VERSIONS = ("1.31", "1.33")
KUBECTL_HINT = "install kubectl (it renders kustomize: kubectl kustomize)"
RENDER_RULES = K8S / "components" / "prometheus-operator" / "render-rules"


@cache
def render(path: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(f"kubectl not found: {KUBECTL_HINT}")
    result = run([kubectl, "kustomize", str(K8S / path)])
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(path: str) -> list[dict[str, Any]]:
    return load_yaml_all(render(path))


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in {"Deployment", "StatefulSet"}
    ]


@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_renders_and_validates_strictly(path: str, version: str, tmp_path: Path) -> None:
    validator = tool("kubernetes-validate", "uv sync (dev group: kubernetes-validate)")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render(path), encoding="utf-8")
    result = run([validator, "-k", version, "--strict", "--quiet", str(manifest)])
    assert result.returncode == 0, result.stdout + result.stderr
    # custom resources only warn there: checked by test_operator_resources
    for line in (result.stdout + result.stderr).splitlines():
        if "Couldn't find schema" in line:
            assert "monitoring.coreos.com/v1" in line, line


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads(overlay: str) -> None:
    objs = objects(f"overlays/{overlay}")
    assert all(o["metadata"].get("namespace") == "streampair" for o in objs if o["kind"] != "Namespace")
    namespace = find(objs, "Namespace", "streampair")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    consumer = find(objs, "Deployment", "consumer")
    producer = find(objs, "Deployment", "producer")
    assert consumer["spec"]["replicas"] == 2
    assert producer["spec"]["replicas"] == 1
    assert consumer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for deployment in (producer, consumer):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8000"
        assert annotations["prometheus.io/path"] == "/metrics"
        spec = template["spec"]
        assert spec["serviceAccountName"] == "streampair"
        assert spec["automountServiceAccountToken"] is False
        assert 10 <= spec["terminationGracePeriodSeconds"] <= 30
        (container,) = spec["containers"]
        assert container["image"] == f"ghcr.io/streampair/{name}:0.1.0"
        assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        assert container["envFrom"] == [{"configMapRef": {"name": "streampair-config"}}]
    spread = consumer["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    pdb = find(objs, "PodDisruptionBudget", "consumer")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == consumer["spec"]["selector"]["matchLabels"]
    sa = find(objs, "ServiceAccount", "streampair")
    assert sa["automountServiceAccountToken"] is False
    assert not [o for o in objs if o["kind"] == "Secret"], "Secrets are never committed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_restricted_pod_security(overlay: str) -> None:
    for name, spec in pod_specs(objects(f"overlays/{overlay}")):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc.get("privileged") is not True
            assert sc["runAsNonRoot"] is True
            assert sc["runAsUser"] != 0
            if name != "pulsar":  # Pulsar writes under /pulsar (components/pulsar/README.md)
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["runAsUser"] == 10001, name
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy(overlay: str) -> None:
    objs = objects(f"overlays/{overlay}")
    # one policy per direction (k8s/base/networkpolicy.yaml says why), both for producer and consumer
    ingress_policy = find(objs, "NetworkPolicy", "streampair-clients-ingress")["spec"]
    spec = find(objs, "NetworkPolicy", "streampair-clients")["spec"]
    assert ingress_policy["podSelector"] == spec["podSelector"]
    assert set(spec["podSelector"]["matchExpressions"][0]["values"]) == {"producer", "consumer"}
    assert ingress_policy["policyTypes"] == ["Ingress"] and "egress" not in ingress_policy
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    (ingress,) = ingress_policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]
    dns, broker = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    # Pulsar: the binary protocol (6650) and the admin REST API (8080); pulsar-cluster: both over TLS
    # (6651, 8443); Macrometa: HTTPS
    expected_ports = {"macrometa": [443], "pulsar-cluster": [8443, 6651]}.get(overlay, [8080, 6650])
    assert broker["ports"] == [{"protocol": "TCP", "port": port} for port in expected_ports]
    if overlay == "demo":
        assert broker["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pulsar"}}}]
    if overlay == "pulsar-cluster":
        assert broker["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "pulsar"
        }


def config(objs: list[dict[str, Any]]) -> dict[str, str]:
    return find(objs, "ConfigMap", "streampair-config")["data"]


def test_demo_overlay_runs_pulsar() -> None:
    objs = objects("overlays/demo")
    assert config(objs)["STREAM_URL"] == "pulsar://pulsar:6650"
    assert config(objs)["STREAM_ADMIN_URL"] == "http://pulsar:8080"
    pulsar = find(objs, "StatefulSet", "pulsar")
    (container,) = pulsar["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("apachepulsar/pulsar:4.0.")
    assert container["command"][:2] == ["bin/pulsar", "standalone"]
    # binary clients connect to what the broker advertises after the lookup: the pod, not "localhost"
    assert container["command"][-2:] == ["--advertised-address", "$(POD_IP)"]
    (pod_ip,) = [e for e in container["env"] if e["name"] == "POD_IP"]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert pulsar["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert [p["port"] for p in find(objs, "Service", "pulsar")["spec"]["ports"]] == [8080, 6650]
    assert {o["kind"] for o in objs} >= {"PodMonitor", "PrometheusRule"}


def test_pulsar_cluster_overlay() -> None:
    """TLS to the Helm chart's proxy; each client's own token and the CA as projected Secret files."""
    objs = objects("overlays/pulsar-cluster")
    data = config(objs)
    assert data["STREAM_URL"] == "pulsar+ssl://pulsar-proxy.pulsar.svc:6651"
    assert data["STREAM_ADMIN_URL"] == "https://pulsar-proxy.pulsar.svc:443"
    assert data["STREAM_AUTH_TOKEN_FILE"] == "/var/run/secrets/streampair/token"
    assert data["STREAM_CA_BUNDLE"] == "/var/run/secrets/streampair/ca.crt"
    assert not [o for o in objs if o["kind"] == "StatefulSet"]
    for name in ("producer", "consumer"):
        spec = find(objs, "Deployment", name)["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert not [e for e in container.get("env", []) if e["name"].startswith("STREAM_AUTH_TOKEN")]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "credentials"]
        assert mount == {"name": "credentials", "mountPath": "/var/run/secrets/streampair", "readOnly": True}
        assert "subPath" not in mount  # a subPath mount is never updated when the Secret is rotated
        (volume,) = [v for v in spec["volumes"] if v["name"] == "credentials"]
        sources = [source["secret"] for source in volume["projected"]["sources"]]
        assert sources == [
            {"name": f"streampair-{name}-token", "items": [{"key": "token", "path": "token"}]},
            {"name": "streampair-pulsar-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        ]
        assert volume["projected"]["defaultMode"] == 0o440


def test_macrometa_overlay() -> None:
    objs = objects("overlays/macrometa")
    data = config(objs)
    assert data["STREAM_BACKEND"] == "macrometa"
    assert data["STREAM_URL"].startswith("https://")
    assert "C8_API_KEY" not in data
    assert not [o for o in objs if o["kind"] in {"StatefulSet", "PodMonitor", "PrometheusRule"}]
    for name in ("producer", "consumer"):
        env = find(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
        (key,) = [e for e in env if e["name"] == "C8_API_KEY"]
        ref = key["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "streampair-macrometa", "key": "C8_API_KEY", "optional": False}
    assert "kubectl -n streampair create secret generic streampair-macrometa" in (
        K8S / "overlays/macrometa/README.md"
    ).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- operator resources
# Fields as documented in the Prometheus Operator API reference (monitoring.coreos.com/v1).
PODMONITOR_SPEC = {
    "jobLabel",
    "podTargetLabels",
    "podMetricsEndpoints",
    "selector",
    "namespaceSelector",
    "sampleLimit",
    "targetLimit",
    "labelLimit",
    "labelNameLengthLimit",
    "labelValueLengthLimit",
    "attachMetadata",
    "scrapeProtocols",
    "fallbackScrapeProtocol",
    "keepDroppedTargets",
    "scrapeClass",
    "selectorMechanism",
    "bodySizeLimit",
    "scrapeClassicHistograms",
    "nativeHistogramBucketLimit",
    "nativeHistogramMinBucketFactor",
    "convertClassicHistogramsToNHCB",
}
POD_METRICS_ENDPOINT = {
    "port",
    "portNumber",
    "targetPort",
    "path",
    "scheme",
    "params",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "honorTimestamps",
    "trackTimestampsStaleness",
    "relabelings",
    "metricRelabelings",
    "filterRunning",
    "followRedirects",
    "enableHttp2",
    "proxyUrl",
    "basicAuth",
    "oauth2",
    "authorization",
    "tlsConfig",
    "bearerTokenSecret",
    "noProxy",
    "proxyFromEnvironment",
    "proxyConnectHeader",
}
RELABEL_CONFIG = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
RULE_GROUP = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
RULE = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_operator_resources() -> None:
    objs = objects("overlays/demo")
    monitors = [o for o in objs if o["kind"] == "PodMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"streampair-clients", "streampair-broker"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) <= PODMONITOR_SPEC, set(spec) - PODMONITOR_SPEC
        for endpoint in spec["podMetricsEndpoints"]:
            assert set(endpoint) <= POD_METRICS_ENDPOINT, set(endpoint) - POD_METRICS_ENDPOINT
            assert endpoint["port"] == "http"
            for relabel in endpoint.get("relabelings", []):
                assert set(relabel) <= RELABEL_CONFIG
    clients = find(objs, "PodMonitor", "streampair-clients")
    assert clients["spec"]["jobLabel"] == "app.kubernetes.io/name"
    (expr,) = clients["spec"]["selector"]["matchExpressions"]
    assert set(expr["values"]) == {"producer", "consumer"}
    consumer = find(objs, "Deployment", "consumer")
    assert consumer["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "consumer"

    rule = find(objs, "PrometheusRule", "streampair")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= RULE_GROUP
        for item in group["rules"]:
            assert set(item) <= RULE and "expr" in item


def test_prometheusrule_carries_exactly_the_rule_file() -> None:
    source = load_yaml(ROOT / "monitoring/rules/streampair.rules.yml")
    committed = load_yaml(K8S / "components/prometheus-operator/prometheusrule.yaml")
    assert committed["spec"] == source
    rendered = find(objects("overlays/demo"), "PrometheusRule", "streampair")
    assert rendered["spec"] == source
    result = subprocess.run(
        [sys.executable, str(RENDER_RULES), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_component_and_overlay_has_a_readme() -> None:
    for folder in [*(K8S / "components").iterdir(), *(K8S / "overlays").iterdir()]:
        assert (folder / "README.md").is_file(), folder
        kustomization = load_yaml(folder / "kustomization.yaml")
        expected = "Component" if folder.parent.name == "components" else "Kustomization"
        assert kustomization["kind"] == expected
    assert (K8S / "README.md").is_file()


def test_images_are_set_through_kustomize() -> None:
    images = {i["name"]: i for i in load_yaml(K8S / "base/kustomization.yaml")["images"]}
    assert set(images) == {"ghcr.io/streampair/producer", "ghcr.io/streampair/consumer"}
    for image in images.values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", image["newTag"])
