"""Shared and Failover with two consumer processes."""

from __future__ import annotations

import signal
from collections import Counter

from harness import FAST, Cluster, all_received, received_seqs, stop_producer_and_collect


async def test_shared_both_receive_and_none_is_lost(cluster: Cluster) -> None:
    await cluster.start_broker()
    c1 = await cluster.start_consumer(
        "consumer-1", SUBSCRIPTION_TYPE="Shared", SUBSCRIPTION_NAME="shared-sub"
    )
    c2 = await cluster.start_consumer(
        "consumer-2", SUBSCRIPTION_TYPE="Shared", SUBSCRIPTION_NAME="shared-sub"
    )
    for c in (c1, c2):
        await c.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    for c in (c1, c2):
        await c.wait_for(lambda line: line.get("event") == "received")
    published = await stop_producer_and_collect(producer)
    got = await all_received(published, c1, c2)
    assert set(received_seqs(c1)) and set(received_seqs(c2))  # both took part
    assert not (set(received_seqs(c1)) & set(received_seqs(c2))) or len(got) > len(set(got))
    for c in (c1, c2):
        assert not [line for line in c.lines if line.get("event") == "subscription_busy"]


async def test_failover_one_receives_and_the_other_takes_over_when_it_dies(cluster: Cluster) -> None:
    await cluster.start_broker()
    env = {"SUBSCRIPTION_TYPE": "Failover", "SUBSCRIPTION_NAME": "failover-sub"}
    c1 = await cluster.start_consumer("consumer-1", **env)
    await c1.wait_for(lambda line: line.get("event") == "subscribed")
    c2 = await cluster.start_consumer("consumer-2", **env)
    await c2.wait_for(lambda line: line.get("event") == "subscribed")  # Failover accepts both
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    first = await c1.wait_for(lambda line: line.get("event") == "received")
    assert first
    # consumer-1 sorts first by name at equal priority: it alone receives.
    await c1.wait_for(lambda line: line.get("event") == "received", start=c1.lines.index(first) + 1)
    assert c2.events("received") == []

    c1.signal(signal.SIGKILL)
    await c2.wait_for(lambda line: line.get("event") == "received", timeout=15)
    published = await stop_producer_and_collect(producer)
    got = await all_received(published, c1, c2)
    counts = Counter(got)
    assert set(counts) >= published
