"""A broker restart in the middle (kill -9): both services reconnect by themselves; nothing acked is lost."""

from __future__ import annotations

import signal

from harness import FAST, Cluster, all_received, published_seqs, stop_producer_and_collect


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


async def test_without_a_broker_the_consumer_is_not_ready_then_subscribes_when_it_comes(
    cluster: Cluster,
) -> None:
    consumer = await cluster.start_consumer("consumer-1", RECONNECT_MAX_SECONDS="0.3")
    body = await consumer.wait_http("/readyz", lambda status, _: status == 503)
    assert body["role"] == "connecting" and "cannot reach" in body["reason"]
    await cluster.start_broker()
    await consumer.wait_for(lambda line: line.get("event") == "subscribed", timeout=20)
    assert (await consumer.get_json("/readyz"))[0] == 200


async def test_sigterm_while_the_broker_is_down_exits_cleanly(cluster: Cluster) -> None:
    await cluster.start_broker()
    c1 = await cluster.start_consumer("consumer-1")
    await c1.wait_for(lambda line: line.get("event") == "subscribed")
    c2 = await cluster.start_consumer("consumer-2")
    await c2.wait_for(lambda line: line.get("event") == "subscription_busy")
    assert cluster.broker is not None
    cluster.broker.signal(signal.SIGKILL)
    await cluster.broker.wait_exit(10)
    await c2.wait_http("/readyz", lambda status, _: status == 503)  # a standby that cannot reach the broker
    for consumer in (c1, c2):
        consumer.signal(signal.SIGTERM)
    for consumer in (c1, c2):
        assert await consumer.wait_exit(10) == 0, consumer.stderr.decode()[-2000:]
        assert "Traceback" not in consumer.stderr.decode()


async def test_sigterm_with_a_frozen_broker_stops_in_time_and_accounts_for_every_message(
    cluster: Cluster,
) -> None:
    broker = await cluster.start_broker()
    consumer = await cluster.start_consumer("consumer-1")
    await consumer.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    await producer.wait_for(lambda line: line.get("event") == "published")
    broker.signal(signal.SIGSTOP)  # answers stop; the connection stays open (half-open)
    try:
        await producer.wait_http("/status", lambda _, body: body["counters"]["in_flight"] >= 3)
        producer.signal(signal.SIGTERM)
        assert await producer.wait_exit(10) == 0  # inside docker stop's 10 s
    finally:
        broker.signal(signal.SIGCONT)
    published = set(published_seqs(producer))
    unconfirmed = {int(line["seq"]) for line in producer.events("publish_unconfirmed")}
    failed = {int(line["seq"]) for line in producer.events("publish_failed")}
    highest = max(published | unconfirmed | failed)
    # Every seq is answered, or said to be unconfirmed (written, no answer) or failed (not sent).
    assert published | unconfirmed | failed == set(range(1, highest + 1))
    assert not published & unconfirmed and not (published | unconfirmed) & failed
    assert unconfirmed, "the frozen broker never answered the last frames written to it"
    # "Unconfirmed" is the truth: the broker stored them once it woke up.
    got = await all_received(published | unconfirmed, consumer)
    assert set(got) >= unconfirmed
