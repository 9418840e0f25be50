"""A loopback variant of monitoring/prometheus.yml for a real Prometheus in tests.

monitoring/prometheus.yml finds producer and consumers by DNS A records on the compose network; a test
that runs the services as local processes gives each its own port on 127.0.0.1 instead. This keeps the
jobs, relabeling and rule files of the real config and only swaps the service discovery for
`static_configs`, so the alert rules see the same `job` labels as in compose and Kubernetes:

    text = render_loopback_config({"producer": ["127.0.0.1:18001"], "consumer": [...], "broker": [...]})
    (tmp / "prometheus.yml").write_text(text)
    prometheus --config.file=tmp/prometheus.yml --web.listen-address=127.0.0.1:19090 \
        --storage.tsdb.path=tmp/data
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "monitoring" / "prometheus.yml"
RULES_DIR = ROOT / "monitoring" / "rules"


def render_loopback_config(
    targets: dict[str, list[str]],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    prometheus_port: int | None = None,
) -> str:
    """The config with each DNS-discovered job turned into static loopback targets.

    `targets` maps job name (producer, consumer, broker) to "127.0.0.1:PORT" strings; a job of the real
    config that is not given keeps no target. Rule files point at monitoring/rules by absolute path.
    """
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"no such job in {CONFIG.name}: {sorted(unknown)}")
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = evaluation_interval
    config["global"]["external_labels"] = {"deployment": "loopback"}
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    jobs = []
    for job in config["scrape_configs"]:
        job = copy.deepcopy(job)
        name = job["job_name"]
        if name == "prometheus":
            if prometheus_port is None:
                continue
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus_port}"]}]
        else:
            job.pop("dns_sd_configs", None)
            job.pop("scrape_interval", None)
            job["static_configs"] = [{"targets": list(targets.get(name, []))}]
            # __meta_dns_name does not exist for static targets: name the service after the job
            job["relabel_configs"] = [
                {"target_label": "service", "replacement": name},
                {"source_labels": ["__address__"], "target_label": "replica"},
            ]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return yaml.safe_dump(config, sort_keys=False)
