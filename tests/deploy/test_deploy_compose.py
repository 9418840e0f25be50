"""docker-compose.yml and the override files in compose/: schema, merge semantics, scaling."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import ROOT, enabled_services, load_compose, merged_compose, run, tool

BASE = "docker-compose.yml"
LITE = "compose/lite.yml"
MACROMETA = "compose/macrometa.yml"
SECURE = "compose/secure.yml"
VARIANTS = {
    "pulsar": (BASE,),
    "lite": (BASE, LITE),
    "macrometa": (BASE, MACROMETA),
    "secure": (BASE, SECURE),
}
CLIENTS = ("producer", "consumer")


def check_jsonschema(path: Path) -> None:
    exe = tool("check-jsonschema", "uv sync (dev group: check-jsonschema)")
    result = run([exe, "--builtin-schema", "vendor.compose-spec", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_file_matches_the_compose_spec() -> None:
    check_jsonschema(ROOT / BASE)


@pytest.mark.parametrize("variant", ["lite", "macrometa", "secure"])
def test_merged_overrides_match_the_compose_spec(variant: str, tmp_path: Path) -> None:
    merged = merged_compose(*VARIANTS[variant])
    target = tmp_path / f"{variant}.yml"
    target.write_text(yaml.safe_dump(merged), encoding="utf-8")
    check_jsonschema(target)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_clients_can_scale(variant: str) -> None:
    services = enabled_services(merged_compose(*VARIANTS[variant]))
    for name in CLIENTS:
        svc = services[name]
        assert "container_name" not in svc, f"{name}: container_name breaks --scale"
        assert "ports" not in svc, f"{name}: a host port breaks --scale (use expose)"
        assert svc["expose"] == ["8000"]
        assert svc["stop_grace_period"] == "15s"
        assert svc["build"] == {
            "context": ".",
            "dockerfile": "services/Dockerfile",
            "target": name,
            "args": {"SERVICE": name},
        }
        assert svc["image"] == f"ghcr.io/streampair/{name}:0.1.0"


def test_pulsar_variant() -> None:
    services = enabled_services(merged_compose(BASE))
    assert set(services) == {"pulsar", "producer", "consumer", "prometheus", "grafana"}
    pulsar = services["pulsar"]
    image, tag = pulsar["image"].split(":")
    assert image == "apachepulsar/pulsar"
    assert tag == pulsar_version(), "one Pulsar version: the one scripts/pulsar-standalone assembles"
    assert pulsar["command"] == [
        "bin/pulsar",
        "standalone",
        "--no-functions-worker",
        "--no-stream-storage",
        # what binary clients connect to after the lookup: Pulsar 4.0's standalone says "localhost"
        "--advertised-address",
        "pulsar",
    ]
    assert pulsar["healthcheck"]["test"] == ["CMD", "bin/pulsar-admin", "brokers", "healthcheck"]
    assert "PULSAR_MEM" in pulsar["environment"]
    assert any(str(v).endswith(":/pulsar/data") for v in pulsar["volumes"])
    for name in CLIENTS:
        env = services[name]["environment"]
        assert env["STREAM_URL"] == "pulsar://pulsar:6650"  # the binary protocol by default
        assert env["STREAM_ADMIN_URL"] == "http://pulsar:8080"
        assert services[name]["depends_on"] == {"pulsar": {"condition": "service_healthy"}}
    assert {"6650", "8080"} <= set(pulsar["expose"])
    assert services["producer"]["environment"]["PUBLISH_INTERVAL_SECONDS"] == "1"
    assert services["consumer"]["environment"]["SUBSCRIPTION_TYPE"] == "Exclusive"


def pulsar_version() -> str:
    match = re.search(
        r"<pulsar.version>([^<]+)</pulsar.version>", (ROOT / "scripts/pulsar/pom.xml").read_text()
    )
    assert match
    return match.group(1)


def test_one_pulsar_version_everywhere() -> None:
    """compose, k8s and the jars of scripts/pulsar-standalone (and so make e2e-docker's stand-in)."""
    version = pulsar_version()
    images = re.findall(r"apachepulsar/pulsar:([0-9.]+)", (ROOT / "docker-compose.yml").read_text())
    for path in sorted((ROOT / "k8s").rglob("*.y*ml")) + sorted((ROOT / "k8s").rglob("*.md")):
        images += re.findall(r"apachepulsar/pulsar:([0-9.]+)", path.read_text(encoding="utf-8"))
    assert images and set(images) == {version}


def test_lite_variant_replaces_pulsar_with_the_embedded_broker() -> None:
    services = enabled_services(merged_compose(BASE, LITE))
    broker = services["pulsar"]
    assert broker["image"] == "ghcr.io/streampair/broker:0.1.0"
    assert broker["build"] == {
        "context": ".",
        "dockerfile": "services/Dockerfile",
        "target": "broker",
        "args": {"SERVICE": "broker"},
    }
    assert broker["command"] == ["python", "-m", "broker"]
    env = broker["environment"]
    assert env["BROKER_HOST"] == "0.0.0.0"
    assert env["BROKER_ALLOW_UNAUTHENTICATED"] == "true" or env.get("BROKER_AUTH_TOKEN")
    assert "PULSAR_MEM" not in env, "!override must drop Pulsar's environment"
    assert broker["volumes"] == ["broker-data:/data"], "!override must drop Pulsar's volume"
    assert "/admin/v2/brokers/health" in " ".join(broker["healthcheck"]["test"])
    # producer and consumer: the same name and depends_on, the WebSocket API (all the broker speaks)
    for name in CLIENTS:
        assert services[name]["environment"]["STREAM_URL"] == "ws://pulsar:8080"
        assert services[name]["environment"]["STREAM_ADMIN_URL"] == ""
        assert services[name]["depends_on"]["pulsar"]["condition"] == "service_healthy"


def test_macrometa_variant_drops_pulsar() -> None:
    model = merged_compose(BASE, MACROMETA)
    services = enabled_services(model)
    assert "pulsar" not in services
    for name in CLIENTS:
        svc = services[name]
        assert "depends_on" not in svc
        env = svc["environment"]
        assert env["STREAM_BACKEND"] == "macrometa"
        assert env["C8_API_KEY"].startswith("${C8_API_KEY:?"), "the key comes from --env-file, never the file"
    # no enabled service depends on a disabled one
    for name, svc in services.items():
        assert set(svc.get("depends_on", {})) <= set(services), name


def test_macrometa_env_example_has_no_secret() -> None:
    values = {}
    for line in (ROOT / "compose" / "macrometa.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    assert values["C8_API_KEY"] == ""
    assert values["STREAM_URL"].startswith("https://")
    assert {"C8_FABRIC", "STREAM_GLOBAL", "STREAM_NAME"} <= set(values)


def test_secure_variant_least_privilege_tokens_from_files_and_tls() -> None:
    """compose/secure.yml (issue #19): each client mounts only its own secrets volume, reads its token
    from a file and trusts the private CA; the grants run once Pulsar is healthy, the clients after."""
    services = enabled_services(merged_compose(BASE, SECURE))
    assert {"pulsar-secrets", "pulsar-grants"} <= set(services)
    mounts = {}
    for name in CLIENTS:
        svc = services[name]
        env = svc["environment"]
        assert env["STREAM_URL"] == "pulsar+ssl://pulsar:6651"
        assert env["STREAM_ADMIN_URL"] == "https://pulsar:8443"
        assert env["STREAM_CA_BUNDLE"] == "/run/secrets/streampair/ca.pem"
        assert env["STREAM_AUTH_TOKEN_FILE"] == "/run/secrets/streampair/token"
        assert "STREAM_AUTH_TOKEN" not in env, "a token in the environment would be visible to docker inspect"
        assert svc["depends_on"]["pulsar-grants"] == {"condition": "service_completed_successfully"}
        (mount,) = svc["volumes"]
        assert mount.endswith(":/run/secrets/streampair:ro")
        mounts[name] = mount.split(":")[0]
    assert mounts == {"producer": "producer-secrets", "consumer": "consumer-secrets"}
    init = services["pulsar-secrets"]
    assert init["network_mode"] == "none" and init["restart"] == "no"
    assert init["cap_drop"] == ["ALL"] and set(init["cap_add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert services["pulsar"]["depends_on"] == {
        "pulsar-secrets": {"condition": "service_completed_successfully"}
    }
    assert "pulsar-secrets:/pulsar/secrets:ro" in services["pulsar"]["volumes"]
    assert services["pulsar-grants"]["depends_on"] == {"pulsar": {"condition": "service_healthy"}}
    grants = " ".join(services["pulsar-grants"]["command"])
    assert "--role streampair-producer --actions produce;" in grants
    assert "--role streampair-consumer --actions consume;" in grants
    assert "streamQuickstart-consumer-subscription-DLQ" in grants  # the consumer's one extra right
    assert (ROOT / "compose/secure-init.sh").is_file()


def test_monitoring_services() -> None:
    services = enabled_services(merged_compose(BASE))
    prom, grafana = services["prometheus"], services["grafana"]
    assert prom["image"].startswith("prom/prometheus:v")
    assert "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "./monitoring/rules:/etc/prometheus/rules:ro" in prom["volumes"]
    assert any(p.endswith(":9090") for p in prom["ports"])
    assert grafana["image"].startswith("grafana/grafana:")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert any(p.endswith(":3000") for p in grafana["ports"])
    for mount in grafana["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_dir(), mount


def test_images_are_pinned() -> None:
    for variant in VARIANTS.values():
        for name, svc in merged_compose(*variant)["services"].items():
            image = svc["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), f"{name}: {image}"


# ----------------------------------------------------------------------------- the real compose loader
@pytest.fixture(scope="session")
def composecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/deploy/composecheck built with Go: compose-go, the loader `docker compose` uses."""
    go = tool("go", "install Go >= 1.24 (the compose-go loader check builds tests/deploy/composecheck)")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    version = run([go, "env", "GOVERSION"], env=env).stdout.strip()
    parts = version.removeprefix("go").split(".")
    if len(parts) < 2 or (int(parts[0]), int(parts[1].split("rc")[0].split("beta")[0])) < (1, 24):
        pytest.skip(f"{version} is too old: compose-go needs Go >= 1.24")
    binary = tmp_path_factory.mktemp("composecheck") / "composecheck"
    result = run([go, "build", "-o", str(binary), "."], cwd=ROOT / "tests/deploy/composecheck", env=env)
    assert result.returncode == 0, result.stderr
    return binary


def compose_go(binary: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("C8_", "STREAM_", "COMPOSE_"))}
    result = run([str(binary), *args], env={**clean, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_real_loader_accepts_every_variant(composecheck: Path) -> None:
    base = compose_go(composecheck, BASE)
    assert set(base["services"]) == {"pulsar", "producer", "consumer", "prometheus", "grafana"}

    lite = compose_go(composecheck, BASE, LITE)["services"]["pulsar"]
    assert lite["image"] == "ghcr.io/streampair/broker:0.1.0"
    assert "PULSAR_MEM" not in lite["environment"]
    assert [v["target"] for v in lite["volumes"]] == ["/data"]

    mm = compose_go(
        composecheck, "-env-file", "compose/macrometa.env.example", BASE, MACROMETA, env={"C8_API_KEY": "k"}
    )
    assert set(mm["services"]) == {"producer", "consumer", "prometheus", "grafana"}
    for name in CLIENTS:
        svc = mm["services"][name]
        assert not svc.get("depends_on")
        assert svc["environment"]["STREAM_BACKEND"] == "macrometa"
        assert svc["environment"]["C8_API_KEY"] == "k"


def test_real_loader_refuses_macrometa_without_a_key(composecheck: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("C8_", "STREAM_"))}
    result = run([str(composecheck), BASE, MACROMETA], env=clean)
    assert result.returncode != 0
    assert "C8_API_KEY" in result.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_python_merge_agrees_with_the_real_loader(variant: str, composecheck: Path) -> None:
    """The merge helper the other tests use must say what compose says."""
    files = VARIANTS[variant]
    real = compose_go(composecheck, *files, env={"C8_API_KEY": "k"})
    ours = enabled_services(merged_compose(*files))
    assert set(real["services"]) == set(ours)
    for name, svc in ours.items():
        assert real["services"][name]["image"] == svc["image"], name
        env = {k: v for k, v in svc.get("environment", {}).items() if "${" not in str(v)}
        real_env = real["services"][name].get("environment", {})
        assert {k: real_env.get(k) for k in env} == {k: str(v) for k, v in env.items()}, name


def test_override_files_are_not_standalone_projects() -> None:
    for name in (LITE, MACROMETA, SECURE):
        assert "name" not in load_compose(ROOT / name)


# ----------------------------------------------------------------------------- make e2e-docker's overrides
E2E_DIR = "scripts/e2e"
E2E_VARIANTS = {
    "pulsar": (BASE, f"{E2E_DIR}/compose.e2e.yml"),
    "lite": (BASE, LITE, f"{E2E_DIR}/compose.e2e-lite.yml", f"{E2E_DIR}/compose.e2e.yml"),
    "macrometa": (BASE, MACROMETA, f"{E2E_DIR}/compose.gdn.yml", f"{E2E_DIR}/compose.e2e.yml"),
    "secure": (BASE, SECURE, f"{E2E_DIR}/compose.e2e.yml"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_e2e_runs_what_users_run(variant: str, composecheck: Path) -> None:
    """scripts/e2e/docker.sh adds test-only files to each variant; they may change how images are built
    (host network) and which host port is published, and add the local GDN stand-in with the
    Macrometa variant, nothing else: every service users start runs as they would run it."""
    env = {"C8_API_KEY": "k"}
    users = compose_go(composecheck, *VARIANTS[variant], env=env)["services"]
    e2e = compose_go(composecheck, *E2E_VARIANTS[variant], env=env)["services"]
    assert set(e2e) - set(users) == ({"gdn"} if variant == "macrometa" else set())
    for name, svc in users.items():
        ours = dict(e2e[name])
        if "build" in svc:
            assert ours["build"].pop("network") == "host", name
        if "ports" in svc:
            assert [(p["host_ip"], p["target"]) for p in ours.pop("ports")] == [
                (p["host_ip"], p["target"]) for p in svc["ports"]
            ]
        if variant == "macrometa" and name in CLIENTS:
            assert ours.pop("depends_on")["gdn"]["condition"] == "service_healthy"
        assert ours == {k: v for k, v in svc.items() if k != "ports"}, name
