"""Issue #12 with real processes: no message stops consumption, and one frame limit end to end."""

from __future__ import annotations

import asyncio
import signal

from harness import (
    FAST,
    Cluster,
    active_and_standby,
    all_received,
    is_event,
    stop_producer_and_collect,
)

MIB = 1024 * 1024


async def test_the_adversarial_message_no_longer_kills_the_active_consumer_nor_the_standby(
    cluster: Cluster,
) -> None:
    """H1: a `seq` of "²" passed str.isdigit() and crashed int(); active, standby and restarts died."""
    await cluster.start_broker()
    c1, c2 = await cluster.start_consumer("consumer-1"), await cluster.start_consumer("consumer-2")
    active, standby = await active_and_standby(c1, c2)
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    await producer.wait_http("/readyz", lambda status, _: status == 200)
    for properties in (
        {"producer_id": "evil", "seq": "\u00b2"},
        {"producer_id": "evil", "seq": "9" * 5000},
        {"producer_id": "evil", "seq": "1", "sent_at": "\u00b9\u00b2"},
        {"producer_id": "evil", "seq": "2", "sent_at": "9" * 400},
    ):
        status, _ = await producer.post_json("/messages", {"payload": "x", "properties": properties})
        assert status == 201
    await active.wait_http("/status", lambda _, body: body["counters"]["malformed_properties"] >= 4)
    expected = await stop_producer_and_collect(producer)
    await all_received(expected, active)  # it goes on receiving
    for svc in (active, standby):
        assert svc.proc is not None and svc.proc.returncode is None, f"{svc.name} died"
    assert await active.metric("streampair_malformed_properties_total", 'property="seq"') == 2


async def test_a_poison_message_is_dead_lettered_across_a_takeover_and_nothing_is_lost(
    cluster: Cluster,
) -> None:
    await cluster.start_broker()
    slow_retries = {"FAIL_ON_PROPERTY": "poison", "MAX_DELIVERY_ATTEMPTS": "4", "RETRY_DELAY_SECONDS": "0.3"}
    c1 = await cluster.start_consumer("consumer-1", **slow_retries)
    c2 = await cluster.start_consumer("consumer-2", **slow_retries)
    active, standby = await active_and_standby(c1, c2)
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    await active.wait_for(is_event("received"))
    status, _ = await producer.post_json("/messages", {"payload": "poison", "properties": {"poison": "yes"}})
    assert status == 201
    await active.wait_for(lambda line: line.get("event") == "handler_failed" and line.get("attempt") == 2)
    active.signal(signal.SIGKILL)  # mid-retry: the message is not acked, the standby gets it again
    await standby.wait_for(is_event("took_over"))
    line = await standby.wait_for(is_event("dead_lettered"), timeout=30)
    assert line["level"] == "warning" and line["message_id"] and line["error_class"] == "SimulatedFailure"
    assert line["dead_letter_stream"] == "streamQuickstart-consumer-subscription-DLQ"
    assert "FAIL_ON_PROPERTY" in line["error"]
    expected = await stop_producer_and_collect(producer)
    await all_received(expected, active, standby)  # the messages behind it were not lost
    _, status_body = await standby.get_json("/status")
    assert status_body["counters"]["dead_lettered"] == 1
    assert await standby.metric("streampair_messages_dead_lettered_total") == 1
    assert await standby.metric("streampair_handler_errors_total", 'error_class="SimulatedFailure"') == 4


async def test_a_frame_the_broker_refuses_fails_alone_without_a_reconnect_storm(cluster: Cluster) -> None:
    """H4: the producer believed in a bigger limit than the broker's and resent the frame forever."""
    await cluster.start_broker(BROKER_MAX_FRAME_BYTES=str(MIB))
    producer = await cluster.start_producer(
        PUBLISH_INTERVAL_SECONDS="0.1", STREAM_MAX_FRAME_BYTES=str(3 * MIB), SEND_TIMEOUT_SECONDS="30"
    )
    await producer.wait_for(is_event("published"))
    status, body = await producer.post_json("/messages", {"payload": "x" * (800 * 1024)})
    assert status == 413, body  # at once, not a 503 after the send timeout
    assert "STREAM_MAX_FRAME_BYTES" in body["error"]
    await producer.wait_http("/readyz", lambda status, _: status == 200)
    status, _ = await producer.post_json("/messages", {"payload": "small"})
    assert status == 201  # the connection came back, and the refused frame is not resent
    attempts = await producer.metric("streampair_connection_attempts_total", 'result="ok"')
    assert attempts <= 3, attempts
    # It learnt the broker's real limit: the next big one is refused before it is sent.
    status, _ = await producer.post_json("/messages", {"payload": "x" * (800 * 1024)})
    assert status == 413
    assert await producer.metric("streampair_connection_attempts_total", 'result="ok"') == attempts
    expected = await stop_producer_and_collect(producer)
    assert expected == set(range(1, max(expected) + 1))  # no periodic message was lost around it


async def test_a_message_too_large_for_the_consumer_blocks_it_visibly_and_without_spinning(
    cluster: Cluster,
) -> None:
    """H3: a consumer with a smaller limit than the broker reconnected 150 times a second, 'all well'."""
    await cluster.start_broker(BROKER_MAX_FRAME_BYTES=str(4 * MIB))
    consumer = await cluster.start_consumer("consumer-1", RECONNECT_MAX_SECONDS="2")
    await consumer.wait_for(is_event("subscribed"))
    producer = await cluster.start_producer(
        PUBLISH_INTERVAL_SECONDS="3600", STREAM_MAX_FRAME_BYTES=str(4 * MIB)
    )
    await producer.wait_http("/readyz", lambda status, _: status == 200)  # connected, not only listening
    status, _ = await producer.post_json("/messages", {"payload": "x" * (2 * MIB)})
    assert status == 201
    body = await consumer.wait_http("/readyz", lambda status, body: "STREAM_MAX_FRAME_BYTES" in str(body))
    assert body["status"] == "not ready", body
    assert await consumer.metric("streampair_consumer_blocked", 'endpoint="consumer"') == 1
    before = await consumer.metric("streampair_connection_attempts_total", 'result="ok"')
    # Absence has no event to await: watch it for three seconds (a hot loop reconnected ~450 times).
    await asyncio.sleep(3)
    after = await consumer.metric("streampair_connection_attempts_total", 'result="ok"')
    assert after - before <= 8, (before, after)
    # The README's recovery: give the consumer the broker's limit; it receives the message and is Ready.
    await consumer.stop()
    bigger = await cluster.start_consumer("consumer-2", STREAM_MAX_FRAME_BYTES=str(4 * MIB))
    await bigger.wait_for(
        lambda line: line.get("event") == "received" and len(line.get("payload", "")) == 1000
    )
    await bigger.wait_http("/readyz", lambda status, _: status == 200)
