"""compose/tracing.yml and k8s/components/tracing: tracing turned on, pointed at a backend (issue #17)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import ROOT, enabled_services, load_compose, load_yaml_all, merged_compose, run, tool
from test_deploy_compose import BASE, CLIENTS, LITE, MACROMETA, check_jsonschema, compose_go, composecheck

TRACING = "compose/tracing.yml"
TRACED = {"pulsar": (BASE, TRACING), "lite": (BASE, LITE, TRACING), "macrometa": (BASE, MACROMETA, TRACING)}
__all__ = ["composecheck"]  # the session fixture, shared with test_deploy_compose


def jaeger_version() -> str:
    result = subprocess.run(
        [str(ROOT / "scripts/jaeger-local"), "version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize("variant", list(TRACED))
def test_tracing_override_matches_the_compose_spec(variant: str, tmp_path: Path) -> None:
    target = tmp_path / f"{variant}-tracing.yml"
    target.write_text(yaml.safe_dump(merged_compose(*TRACED[variant])), encoding="utf-8")
    check_jsonschema(target)


@pytest.mark.parametrize("variant", list(TRACED))
def test_tracing_turns_both_clients_on_towards_jaeger(variant: str) -> None:
    services = enabled_services(merged_compose(*TRACED[variant]))
    jaeger = services["jaeger"]
    image, tag = jaeger["image"].split(":")
    assert image == "jaegertracing/jaeger"
    assert tag == jaeger_version(), "compose runs the Jaeger that scripts/jaeger-local builds for the tests"
    assert jaeger["ports"] == ["127.0.0.1:16686:16686"], "the UI on loopback only"
    assert "4318" in jaeger["expose"]
    for name in CLIENTS:
        env = services[name]["environment"]
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
        assert services[name]["depends_on"]["jaeger"] == {"condition": "service_started"}
        assert set(services[name]["depends_on"]) <= set(services), name
        assert "ports" not in services[name], "--scale still works"
    # what the variant itself set is kept
    if variant == "macrometa":
        assert services["producer"]["environment"]["STREAM_BACKEND"] == "macrometa"
    else:
        assert services["consumer"]["depends_on"]["pulsar"] == {"condition": "service_healthy"}


def test_tracing_is_not_a_standalone_project() -> None:
    assert "name" not in load_compose(ROOT / TRACING)


@pytest.mark.parametrize("variant", list(TRACED))
def test_real_loader_accepts_tracing(variant: str, composecheck: Path) -> None:
    real = compose_go(composecheck, *TRACED[variant], env={"C8_API_KEY": "k"})["services"]
    ours = enabled_services(merged_compose(*TRACED[variant]))
    assert set(real) == set(ours)
    for name in CLIENTS:
        env = real[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert set(real[name]["depends_on"]) == set(ours[name]["depends_on"])
    (port,) = real["jaeger"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "16686", 16686)


# ----------------------------------------------------------------------------- k8s
def render_with_tracing(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """An overlay of the user's kind: one of ours plus components/tracing (kustomize wants relative paths)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: install kubectl (it renders kustomize: kubectl kustomize)")
    k8s = ROOT / "k8s"
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(k8s / "overlays" / overlay, tmp_path)],
                "components": [os.path.relpath(k8s / "components" / "tracing", tmp_path)],
            }
        ),
        encoding="utf-8",
    )
    result = run([kubectl, "kustomize", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    (tmp_path / "rendered.yaml").write_text(result.stdout, encoding="utf-8")
    return load_yaml_all(result.stdout)


@pytest.mark.parametrize("overlay", ["demo", "pulsar-cluster", "macrometa"])
def test_k8s_component_turns_tracing_on(overlay: str, tmp_path: Path) -> None:
    objs = render_with_tracing(tmp_path, overlay)
    (config,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "streampair-config"]
    data = config["data"]
    assert data["OTEL_TRACES_EXPORTER"] == "otlp"
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://") and data[
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ].endswith(":4318")
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert data["STREAM_URL"], "the overlay's own settings stay"
    (policy,) = [
        o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "streampair-clients"
    ]
    *rest, otlp = policy["spec"]["egress"]
    assert len(rest) == 2, "DNS and the broker, as before"
    assert otlp["ports"] == [{"protocol": "TCP", "port": 4318}]
    assert otlp["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    ]
    for kind, name in (("Deployment", "producer"), ("Deployment", "consumer")):
        (deployment,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": "streampair-config"}} in container["envFrom"]
    validator = tool("kubernetes-validate", "uv sync (dev group: kubernetes-validate)")
    checked = run([validator, "-k", "1.33", "--strict", "--quiet", str(tmp_path / "rendered.yaml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for line in (checked.stdout + checked.stderr).splitlines():
        if "Couldn't find schema" in line:  # the operator's custom resources (demo): only a warning
            assert "monitoring.coreos.com/v1" in line, line


def test_k8s_component_readme_names_the_endpoint() -> None:
    readme = (ROOT / "k8s/components/tracing/README.md").read_text(encoding="utf-8")
    patch = yaml.safe_load((ROOT / "k8s/components/tracing/configmap-patch.yaml").read_text(encoding="utf-8"))
    assert patch["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] in readme


# ------------------------------------------------------------------------ make e2e-docker's tracing story
E2E_TRACING = (
    BASE,
    LITE,
    "scripts/e2e/compose.e2e-lite.yml",
    TRACING,
    "scripts/e2e/compose.e2e-tracing.yml",
    "scripts/e2e/compose.e2e.yml",
)


def test_e2e_tracing_variant_runs_what_users_run(composecheck: Path) -> None:
    """The same as test_e2e_runs_what_users_run for the `tracing` variant of scripts/e2e/docker.sh: the
    test files change how images are built and which host ports are published, nothing else."""
    users = compose_go(composecheck, BASE, LITE, TRACING)["services"]
    e2e = compose_go(composecheck, *E2E_TRACING)["services"]
    assert set(e2e) == set(users)
    for name, svc in users.items():
        ours = dict(e2e[name])
        if "build" in svc:
            assert ours["build"].pop("network") == "host", name
        if "ports" in svc:
            published = [(p["host_ip"], p["target"]) for p in ours.pop("ports")]
            assert published == [(p["host_ip"], p["target"]) for p in svc["ports"]], name
        assert ours == {k: v for k, v in svc.items() if k != "ports"}, name
    docker_sh = (ROOT / "scripts/e2e/docker.sh").read_text(encoding="utf-8")
    for name in E2E_TRACING[1:-1]:
        assert f'"$ROOT/{name}"' in docker_sh or f'"$HERE/{Path(name).name}"' in docker_sh, name


def load_jaeger_api() -> Any:
    spec = importlib.util.spec_from_file_location("e2e_jaeger_api", ROOT / "scripts/e2e/jaeger_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jaeger_api_reads_the_query_answer() -> None:
    """The shape of GET /api/traces/{id} (Jaeger's JSON model) as the story reads it."""
    body = {
        "data": [
            {
                "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spans": [
                    {"spanID": "a1", "operationName": "send s", "references": [], "processID": "p1"},
                    {
                        "spanID": "b2",
                        "operationName": "process s",
                        "references": [{"refType": "CHILD_OF", "traceID": "4bf9", "spanID": "a1"}],
                        "processID": "p2",
                    },
                ],
                "processes": {
                    "p1": {"serviceName": "streampair-producer"},
                    "p2": {"serviceName": "streampair-consumer"},
                },
            }
        ]
    }
    spans = load_jaeger_api().flatten(body)
    assert spans["send s"]["service"] == "streampair-producer" and spans["send s"]["parent"] is None
    assert spans["process s"]["service"] == "streampair-consumer" and spans["process s"]["parent"] == "a1"
    assert load_jaeger_api().flatten({"data": None}) == {}
