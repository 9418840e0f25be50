"""The Exclusive story as tests and benchmarks observe it: events, roles, sequence numbers.

Shared by the end-to-end suite (embedded broker), the conformance suite (real Pulsar), the
benchmarks and the chaos suite, so that all of them read the services' logs the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from harness.processes import Service

Predicate = Callable[[dict[str, Any]], bool]

_SEQ = re.compile(r"[0-9]{1,18}")

#: Fast enough to see many messages in a short test, slow enough that every publish is logged.
FAST = "0.02"


def is_event(*names: str) -> Predicate:
    return lambda line: line.get("event") in names


def is_busy_warning(line: dict[str, Any]) -> bool:
    return line.get("event") == "subscription_busy" and line.get("level") == "warning"


def log_time(line: dict[str, Any]) -> float:
    """Wall-clock time of a JSON log line (its ISO timestamp), or now."""
    stamp = line.get("timestamp")
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return time.time()


def received_seqs(*consumers: Service, producer_id: str | None = None) -> list[int]:
    """Every seq the consumers logged as received (duplicates included); malformed ones skipped."""
    out = []
    for c in consumers:
        for line in c.events("received"):
            props = line.get("properties") or {}
            seq = str(props.get("seq", ""))
            mine = producer_id is None or props.get("producer_id") == producer_id
            if mine and _SEQ.fullmatch(seq):  # forged ones ("²", 5,000 digits) are not ours
                out.append(int(seq))
    return out


def published_seqs(producer: Service) -> list[int]:
    return [int(line["seq"]) for line in producer.events("published")]


async def role(svc: Service) -> str | None:
    """The role in /status, or None while the service does not answer."""
    with contextlib.suppress(OSError, ValueError, TimeoutError, aiohttp.ClientError, KeyError, TypeError):
        _, body = await svc.get_json("/status")
        return str(body["role"])
    return None


async def active_and_standby(a: Service, b: Service, timeout: float = 30.0) -> tuple[Service, Service]:
    """Poll /status until one is active and the other standby (a role has no log line per poll)."""
    deadline = time.monotonic() + timeout
    roles: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        roles = {a.name: await role(a), b.name: await role(b)}
        if sorted(map(str, roles.values())) == ["active", "standby"]:
            return (a, b) if roles[a.name] == "active" else (b, a)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no active/standby pair within {timeout}s: {roles}")


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` every 50 ms (for state that has no event to wait on); False on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def stop_producer_and_collect(producer: Service) -> set[int]:
    """SIGTERM the producer (it finishes what is in flight); every seq the broker acknowledged."""
    await producer.stop()
    assert producer.proc is not None and producer.proc.returncode == 0, producer.stderr.decode()[-2000:]
    seqs = published_seqs(producer)
    assert seqs, "the producer published nothing"
    return set(seqs)


async def all_received(expected: set[int], *consumers: Service, timeout: float = 30.0) -> list[int]:
    """Wait until the consumers together logged every expected seq; all receipts, duplicates included."""
    got: list[int] = []

    def complete() -> bool:
        nonlocal got
        got = received_seqs(*consumers)
        return not expected - set(got)

    if not await until(complete, timeout):
        missing = expected - set(got)
        raise AssertionError(f"{len(missing)} published messages never received, e.g. {sorted(missing)[:10]}")
    return got
