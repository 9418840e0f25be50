"""The pure parts of scripts/e2e/consumer_logs.py (what `make e2e-docker` reads in the consumers'
logs): event patterns, docker timestamps and the gap/duplicate count."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from deploy_helpers import ROOT


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "e2e_consumer_logs", ROOT / "scripts" / "e2e" / "consumer_logs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


stories = load()


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("subscribed", "subscribed"),
        ("subscription_busy", "standby"),
        ("took_over", "took_over"),
        ("took over the subscription", None),  # the sentence is in `message`, not the event
        ("received", "received"),
        ("subscription busy: ...; exiting (ON_BUSY=exit)", None),
        ("lost the subscription's connection; reconnecting", None),
        ("published", None),
    ],
)
def test_log_events_by_name(event: str, kind: str | None) -> None:
    assert stories.Event("consumer-1", 0.0, {"event": event}).kind() == kind


def test_docker_timestamps() -> None:
    assert stories.parse_docker_time("2026-11-30T01:18:34.491308599Z") == pytest.approx(1796002714.491308)
    assert stories.parse_docker_time("2026-11-30T01:18:34Z") == pytest.approx(1796002714.0)


def received(container: str, producer: str, *seqs: int) -> list[object]:
    return [
        stories.Event(
            container, float(i), {"event": "received", "properties": {"producer_id": producer, "seq": str(s)}}
        )
        for i, s in enumerate(seqs)
    ]


def test_sequence_report_counts_gaps_and_duplicates_across_replicas() -> None:
    # consumer-1 received 5..8, died before acking 8; consumer-2 took over and got 8 again, then 9, 11
    events = received("consumer-1", "p", 5, 6, 7, 8) + received("consumer-2", "p", 8, 9, 11)
    assert stories.sequence_report(events) == (7, 11, 1, 1)  # 10 is missing, 8 twice
    # per producer: another producer's numbering is independent
    assert stories.sequence_report(events + received("consumer-2", "q", 1, 2)) == (9, 11, 1, 1)
    assert stories.sequence_report([]) == (0, 0, 0, 0)
