"""The README and docs/ are true: every setting, metric, endpoint and make target users see is
documented, and every link goes somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from broker.settings import BrokerSettings
from consumer.settings import ConsumerSettings
from producer.settings import ProducerSettings
from pydantic_settings import BaseSettings

from harness import ROOT

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def text(*names: str) -> str:
    return "\n".join((DOCS / name).read_text() for name in names)


@pytest.mark.parametrize(
    ("cls", "page"),
    [
        (ProducerSettings, "settings.md"),
        (ConsumerSettings, "settings.md"),
        (BrokerSettings, "embedded-broker.md"),
    ],
)
def test_every_setting_is_documented(cls: type[BaseSettings], page: str) -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text(page)))
    missing = {name.upper() for name in cls.model_fields} - documented
    assert not missing, f"{page} does not document {sorted(missing)}"


def defined_metrics() -> set[str]:
    names: set[str] = set()
    sources = [*(ROOT / "shared/streampair").glob("*.py"), *(ROOT / "services").glob("*/*/metrics.py")]
    for source in sources:
        # a series' name is the first argument of its constructor, on its line or the next
        for name in re.findall(r'(?:^\s*|\()"(streampair_[a-z_]+)"', source.read_text(), re.M):
            names.add(name)
    broker = (ROOT / "services/broker/broker/metrics.py").read_text()
    names |= {"streampair_broker_" + n for n in re.findall(r'P \+ "([a-z_]+)"', broker)}
    # the table-driven families: ("name", "Help", value) rows
    names |= {"streampair_broker_" + n for n in re.findall(r'^\s*\(?"([a-z][a-z_]+)",', broker, re.M)}
    return names


def test_every_metric_is_documented() -> None:
    metrics = defined_metrics()
    assert len(metrics) > 30, metrics  # the scan found them
    documented = text("metrics.md", "embedded-broker.md")
    missing = {m for m in metrics if m not in documented}
    assert not missing, f"undocumented metrics: {sorted(missing)}"


def test_every_endpoint_is_documented() -> None:
    routes = {"/livez", "/readyz", "/metrics", "/status", "/messages"}
    documented = text("http-api.md")
    assert all(f"`GET {r}`" in documented or f"`POST {r}`" in documented for r in routes)


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", "\n".join(p.read_text() for p in PAGES)))
    assert named, "no make command found in the docs"
    assert named <= targets, f"named but not in the Makefile: {sorted(named - targets)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170
