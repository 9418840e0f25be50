"""The services' Exclusive story with the real processes against a real Apache Pulsar:
one consumer active, one refused (409) and waiting as a standby, SIGKILL of the active one,
takeover by the standby, and every message the producer published received by someone.

Same story as tests/e2e/test_exclusive.py (embedded broker), with one change of order: the
consumers start before the producer. Pulsar creates a subscription at its first consumer's
connect, positioned at the end of the topic, so messages published before that are not the
subscription's to deliver; starting the producer first would make "nothing lost" racy.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import pytest

from tests.conformance.conftest import unique
from tests.harness import Service, base_env, free_port, published_seqs, received_seqs

pytestmark = pytest.mark.pulsar

FAST = "0.02"


@pytest.fixture
async def services() -> AsyncIterator[list[Service]]:
    made: list[Service] = []
    yield made
    await asyncio.gather(*(s.stop() for s in made), return_exceptions=True)


def _is_busy_warning(line: dict[str, object]) -> bool:
    return str(line.get("event", "")).startswith("subscription busy:") and line.get("level") == "warning"


async def _active_and_standby(a: Service, b: Service, timeout: float = 30.0) -> tuple[Service, Service]:
    """Poll /status until one is active and the other standby (a role has no log line per poll)."""
    deadline = time.monotonic() + timeout
    roles: dict[str, str] = {}
    while time.monotonic() < deadline:
        for svc in (a, b):
            try:
                _, body = await svc.get_json("/status")
            except (OSError, ValueError, TimeoutError):
                continue  # not listening yet
            roles[svc.name] = body["role"]
        if sorted(roles.values()) == ["active", "standby"]:
            return (a, b) if roles[a.name] == "active" else (b, a)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no active/standby pair within {timeout}s: {roles}")


async def _all_received(expected: set[int], *consumers: Service, timeout: float = 30.0) -> list[int]:
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


async def test_exclusive_standby_takes_over_after_sigkill_and_nothing_is_lost_on_pulsar(
    pulsar_url: str, services: list[Service]
) -> None:
    stream, subscription = unique("svc"), unique("svc-sub")
    stream_env = {
        "STREAM_URL": "ws" + pulsar_url.removeprefix("http"),
        "STREAM_NAME": stream,
        "SUBSCRIPTION_NAME": subscription,
    }

    def service(name: str, module: str, **env: str) -> Service:
        svc = Service(name, module, base_env(HTTP_PORT=str(free_port()), **stream_env, **env))
        services.append(svc)
        return svc

    c1 = await service("consumer-1", "consumer", CONSUMER_NAME="consumer-1").start()
    c2 = await service("consumer-2", "consumer", CONSUMER_NAME="consumer-2").start()
    active, standby = await _active_and_standby(c1, c2)
    warning = await standby.wait_for(_is_busy_warning)
    assert warning["event"] == (
        f"subscription busy: another consumer holds Exclusive subscription '{subscription}' "
        f"on '{stream}'; waiting as standby"
    )

    producer = await service("producer", "producer", PUBLISH_INTERVAL_SECONDS=FAST).start()
    try:
        await producer.wait_for(lambda line: line.get("event") == "published", timeout=30)
    except AssertionError as error:  # it exited: its reason is in its JSON log, not on stderr
        raise AssertionError(f"{error}\nproducer log:\n" + "\n".join(producer.raw[-5:])) from None
    await active.wait_for(lambda line: line.get("event") == "received", timeout=30)
    _, status = await standby.get_json("/status")
    assert status["role"] == "standby" and status["counters"]["rejections"] >= 1
    assert standby.events("received") == []

    active.signal(signal.SIGKILL)
    await standby.wait_for(lambda line: line.get("event") == "took over the subscription", timeout=20)
    mark = len(standby.lines)
    await standby.wait_for(lambda line: line.get("event") == "received", start=mark, timeout=20)

    await producer.stop()
    assert producer.proc is not None and producer.proc.returncode == 0, producer.stderr.decode()[-2000:]
    published = set(published_seqs(producer))
    assert published, "the producer published nothing"
    got = await _all_received(published, active, standby)
    assert set(got) >= published
    _, status = await standby.get_json("/status")
    assert status["role"] == "active"
