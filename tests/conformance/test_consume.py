"""Acks, negative acks and redelivery: what a consumer does not acknowledge comes again.

redeliveryCount: Pulsar 4.0.7 counts redeliveries only on Shared and Key_Shared subscriptions
and only for negative acks (its single-active-consumer dispatcher of Exclusive and Failover
has no redelivery tracker, so the count stays 0; a consumer that leaves does not raise it on
any type). `test_redelivery_count_*` pin those counts on both brokers.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from tests.conformance.conftest import (
    WS,
    Target,
    ack,
    eventually,
    nack,
    nothing_within,
    publish,
    recv,
    recv_n,
    texts_of,
    unique,
)

pytestmark = pytest.mark.ws_only(
    "WebSocket frames: acks, nacks and redelivery through the library are in test_client.py"
)


async def test_acked_messages_are_not_redelivered_and_leave_the_backlog(target: Target) -> None:
    topic, sub = unique("ack"), unique("sub")
    c1 = await target.consumer(topic, sub)  # the subscription starts at the end of the topic
    producer = await target.producer(topic)
    await publish(producer, ["m0", "m1", "m2", "m3"])
    frames = await recv_n(c1, 4)
    assert texts_of(frames) == ["m0", "m1", "m2", "m3"]
    assert all(f["redeliveryCount"] == 0 for f in frames)
    for frame in (frames[0], frames[2], frames[3]):
        await ack(c1, frame)  # an ack has no answer frame
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 1)
    await c1.close()

    c2 = await target.consumer(topic, sub)
    again = await recv(c2)
    assert again["messageId"] == frames[1]["messageId"] and texts_of([again]) == ["m1"]
    await ack(c2, again)
    await publish(producer, ["m4"])
    assert texts_of([await recv(c2)]) == ["m4"]  # nothing else came before the new message
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 1)
    await c2.close()
    await producer.close()


@pytest.mark.parametrize("sub_type", ["Exclusive", "Shared", "Failover", "Key_Shared"])
async def test_negative_ack_redelivers_the_same_message(target: Target, sub_type: str) -> None:
    topic, sub = unique("nack"), unique("sub")
    consumer = await target.consumer(topic, sub, subscriptionType=sub_type, negativeAckRedeliveryDelay="100")
    producer = await target.producer(topic)
    await publish(producer, ["n0", "n1"], key=lambda _: "k")
    first, second = await recv_n(consumer, 2)
    await ack(consumer, second)
    await nack(consumer, first)
    again = await recv(consumer)  # after about 100 ms
    assert again["messageId"] == first["messageId"]
    assert again["payload"] == first["payload"] and again.get("key") == "k"
    if sub_type in ("Shared", "Key_Shared"):
        assert again["redeliveryCount"] == 1
    await ack(consumer, again)
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 0)
    await consumer.close()
    await producer.close()


def _drop(ws: WS) -> None:
    """Cut the TCP connection without a WebSocket close frame (a consumer that dies)."""
    sock = ws.get_extra_info("socket")
    sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_unacked_messages_of_a_departed_exclusive_consumer_go_to_the_next_one(
    target: Target, how: str
) -> None:
    topic, sub = unique("gone"), unique("sub")
    c1 = await target.consumer(topic, sub, subscriptionType="Exclusive")
    producer = await target.producer(topic)
    await publish(producer, ["g0", "g1", "g2"])
    delivered = await recv_n(c1, 3)
    if how == "close":
        await c1.close()
    else:
        _drop(c1)
        await c1.close()

    # The broker releases the subscription asynchronously: retry the 409 briefly.
    c2 = await _reconnect(target, topic, sub)
    redelivered = await recv_n(c2, 3)
    assert [f["messageId"] for f in redelivered] == [f["messageId"] for f in delivered]
    assert texts_of(redelivered) == ["g0", "g1", "g2"]
    await nothing_within(c2, 0.3)  # no duplicate beyond the three (bounded wait: an absence)
    await c2.close()
    await producer.close()


async def _reconnect(target: Target, topic: str, sub: str, **params: str) -> WS:
    for attempt in range(50):
        try:
            return await target.consumer(topic, sub, **params)
        except aiohttp.WSServerHandshakeError as error:
            assert error.status == 409 and attempt < 49, error
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("sub_type", ["Exclusive", "Failover"])
async def test_redelivery_count_after_a_negative_ack_on_a_single_consumer_subscription_is_0(
    target: Target, sub_type: str
) -> None:
    topic, sub = unique("rc"), unique("sub")
    consumer = await target.consumer(topic, sub, subscriptionType=sub_type, negativeAckRedeliveryDelay="100")
    producer = await target.producer(topic)
    await publish(producer, ["r0"])
    first = await recv(consumer)
    await nack(consumer, first)
    again = await recv(consumer)
    assert again["messageId"] == first["messageId"]
    assert again["redeliveryCount"] == 0
    await consumer.close()
    await producer.close()


@pytest.mark.parametrize("sub_type", ["Exclusive", "Shared"])
async def test_redelivery_count_after_a_consumer_left_is_0(target: Target, sub_type: str) -> None:
    topic, sub = unique("rcgone"), unique("sub")
    c1 = await target.consumer(topic, sub, subscriptionType=sub_type)
    producer = await target.producer(topic)
    await publish(producer, ["x0", "x1"])
    delivered = await recv_n(c1, 2)
    await c1.close()
    c2 = await _reconnect(target, topic, sub, subscriptionType=sub_type)
    redelivered = await recv_n(c2, 2)
    assert {f["messageId"] for f in redelivered} == {f["messageId"] for f in delivered}
    assert [f["redeliveryCount"] for f in redelivered] == [0, 0]
    await c2.close()
    await producer.close()
