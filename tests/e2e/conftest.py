from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import Cluster, Service, published_seqs, received_seqs

#: Fast enough to see many messages in a short test, slow enough that every publish is logged.
FAST = "0.02"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop()


def is_busy_warning(line: dict[str, object]) -> bool:
    return str(line.get("event", "")).startswith("subscription busy:") and line.get("level") == "warning"


def is_active(line: dict[str, object]) -> bool:
    return line.get("event") in ("subscribed", "took over the subscription")


async def active_and_standby(a: Service, b: Service, timeout: float = 20.0) -> tuple[Service, Service]:
    """Wait until one consumer holds the subscription and the other was refused; return (active, standby)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles = {}
        for svc in (a, b):
            _, body = await svc.get_json("/status")
            roles[svc.name] = body["role"]
        if sorted(roles.values()) == ["active", "standby"]:
            return (a, b) if roles[a.name] == "active" else (b, a)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no active/standby pair: {roles}")


async def stop_producer_and_collect(producer: Service) -> set[int]:
    """SIGTERM the producer (it finishes what is in flight) and return every seq the broker acknowledged."""
    await producer.stop()
    assert producer.proc is not None and producer.proc.returncode == 0, producer.stderr.decode()
    seqs = published_seqs(producer)
    assert seqs, "the producer published nothing"
    return set(seqs)


async def all_received(expected: set[int], *consumers: Service, timeout: float = 30.0) -> list[int]:
    """Wait until the consumers together logged every expected seq; return all receipts (with duplicates)."""
    deadline = time.monotonic() + timeout
    while True:
        got = received_seqs(*consumers)
        missing = expected - set(got)
        if not missing:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(missing)} published messages never received, e.g. {sorted(missing)[:10]}"
            )
        await asyncio.sleep(0.05)
