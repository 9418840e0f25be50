"""The services' Exclusive story with the real processes against a real Apache Pulsar, through
its WebSocket API and through its binary protocol: one consumer active, one refused (409,
ConsumerBusy) and waiting as a standby, SIGKILL of the active one, takeover by the standby,
and every message the producer published received by someone.

Same story as tests/e2e/test_exclusive.py (embedded broker), with one change of order: the
consumers start before the producer. Pulsar creates a subscription at its first consumer's
connect, positioned at the end of the topic, so messages published before that are not the
subscription's to deliver; starting the producer first would make "nothing lost" racy.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness import (
    FAST,
    Cluster,
    active_and_standby,
    all_received,
    is_busy_warning,
    stop_producer_and_collect,
)
from harness.pulsar import PulsarEndpoints
from tests.conformance.conftest import unique

pytestmark = pytest.mark.pulsar


@pytest.mark.parametrize("transport", ["websocket", "binary"])
async def test_exclusive_standby_takes_over_after_sigkill_and_nothing_is_lost_on_pulsar(
    pulsar: PulsarEndpoints, tmp_path: Path, transport: str
) -> None:
    stream, subscription = unique("svc"), unique("svc-sub")
    where = (
        {"STREAM_URL": pulsar.binary, "STREAM_ADMIN_URL": pulsar.http}
        if transport == "binary"
        else {"STREAM_URL": pulsar.ws}
    )
    cluster = Cluster(tmp_path, **where, STREAM_NAME=stream, SUBSCRIPTION_NAME=subscription)
    try:
        c1 = await cluster.start_consumer("consumer-1")
        c2 = await cluster.start_consumer("consumer-2")
        active, standby = await active_and_standby(c1, c2)
        warning = await standby.wait_for(is_busy_warning)
        assert warning["message"] == (
            f"another consumer holds Exclusive subscription '{subscription}' "
            f"on '{stream}'; waiting as standby"
        )

        producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
        await producer.wait_for(lambda line: line.get("event") == "published", timeout=30)
        await active.wait_for(lambda line: line.get("event") == "received", timeout=30)
        _, status = await standby.get_json("/status")
        assert status["role"] == "standby" and status["counters"]["rejections"] >= 1
        assert standby.events("received") == []

        active.signal(signal.SIGKILL)
        await standby.wait_for(lambda line: line.get("event") == "took_over", timeout=20)
        mark = len(standby.lines)
        await standby.wait_for(lambda line: line.get("event") == "received", start=mark, timeout=20)

        published = await stop_producer_and_collect(producer)
        got = await all_received(published, active, standby)
        assert set(got) >= published
        _, status = await standby.get_json("/status")
        assert status["role"] == "active"
        assert status["transport"] == transport
    finally:
        await cluster.stop()
