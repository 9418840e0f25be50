"""A broker restart in the middle (kill -9): both services reconnect by themselves; nothing acked is lost."""

from __future__ import annotations

import signal

from tests.e2e.conftest import FAST, all_received, stop_producer_and_collect
from tests.harness import Cluster


async def test_broker_kill_and_restart_loses_nothing(cluster: Cluster) -> None:
    broker = await cluster.start_broker()
    consumer = await cluster.start_consumer("consumer-1", RECONNECT_MAX_SECONDS="0.5")
    await consumer.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST, RECONNECT_MAX_SECONDS="0.5")
    await consumer.wait_for(lambda line: line.get("event") == "received")

    broker.signal(signal.SIGKILL)
    await broker.wait_exit(10)
    await producer.wait_http("/readyz", lambda status, _: status == 503)
    marker = len(consumer.lines)
    await cluster.start_broker()
    await producer.wait_http("/readyz", lambda status, _: status == 200)
    await consumer.wait_for(lambda line: line.get("event") == "received", start=marker, timeout=30)

    published = await stop_producer_and_collect(producer)
    got = await all_received(published, consumer)
    assert set(got) >= published
    assert producer.proc is not None and producer.proc.returncode == 0
