"""Subscription semantics: handshakes, acks, redelivery, flow control, the four types."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.broker.conftest import (
    Client,
    ack,
    metric,
    nothing,
    publish,
    publish_many,
    recv,
    send_json,
    unb64,
)


async def test_delivery_frame_has_pulsar_fields(client: Client) -> None:
    consumer = await client.consumer()
    producer = await client.producer()
    sent = await publish(producer, "m1", key="k1", properties={"a": "b"})
    frame = await recv(consumer)
    assert frame["messageId"] == sent["messageId"]
    assert unb64(frame["payload"]) == "m1"
    assert frame["properties"] == {"a": "b"}
    assert frame["key"] == "k1"
    assert frame["redeliveryCount"] == 0
    assert frame["publishTime"].endswith("Z") and "T" in frame["publishTime"]


async def test_second_exclusive_consumer_is_409_with_pulsar_body(client: Client) -> None:
    first = await client.consumer()
    url = client.base.replace("http", "ws") + "/ws/v2/consumer/persistent/public/default/t/s"
    async with client.session.get(
        client.base + "/ws/v2/consumer/persistent/public/default/t/s",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as response:
        assert response.status == 409
        assert "Exclusive consumer is already connected" in await response.text()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(url)
    assert refused.value.status == 409
    await first.close()


async def test_exclusive_is_free_again_after_the_consumer_leaves(client: Client) -> None:
    first = await client.consumer()
    await first.close()
    second = await client.consumer()
    assert not second.closed


@pytest.mark.parametrize("bad", ["exclusive", "Round_Robin", "SHARED"])
async def test_unknown_subscription_type_is_400(client: Client, bad: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.consumer(subscriptionType=bad)
    assert refused.value.status == 400


@pytest.mark.parametrize("path", ["/t/", "/t"])
async def test_empty_or_missing_subscription_is_400(client: Client, path: str) -> None:
    url = client.base.replace("http", "ws") + "/ws/v2/consumer/persistent/public/default" + path
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(url)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "query",
    [
        {"receiverQueueSize": "many"},
        {"ackTimeoutMillis": "-1"},
        {"subscriptionMode": "Sometimes"},
        {"receiverQueueSize": ""},
        {"ackTimeoutMillis": "999"},
        {"consumerName": ""},
        {"maxRedeliverCount": "0"},
        {"priorityLevel": "x"},
    ],
)
async def test_bad_consumer_parameters_are_400(client: Client, query: dict[str, str]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.consumer(**query)
    assert refused.value.status == 400


async def test_different_type_while_consumers_attached_is_409(client: Client) -> None:
    first = await client.consumer(subscriptionType="Shared")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.consumer(subscriptionType="Failover")
    assert refused.value.status == 409
    await first.close()


async def test_existing_subscription_resumes_at_its_cursor(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer()
    await publish_many(producer, ["a", "b", "c"])
    first = await recv(consumer)
    await ack(consumer, first)
    await recv(consumer)  # b delivered, not acked
    await consumer.close()
    await publish(producer, "d")
    again = await client.consumer()
    got = [unb64((await recv(again))["payload"]) for _ in range(3)]
    assert got == ["b", "c", "d"]


async def test_unacked_of_a_departed_exclusive_consumer_go_to_the_next(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer()
    await publish_many(producer, ["a", "b"])
    await recv(consumer)
    await recv(consumer)
    await consumer.close()
    nxt = await client.consumer()
    frames = [await recv(nxt), await recv(nxt)]
    assert [unb64(f["payload"]) for f in frames] == ["a", "b"]
    assert all(f["redeliveryCount"] == 0 for f in frames)  # Pulsar does not count a departure


async def test_negative_ack_redelivers_after_the_delay_with_count(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer(subscriptionType="Shared", negativeAckRedeliveryDelay=100)
    await publish(producer, "n")
    frame = await recv(consumer)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send_json(consumer, {"type": "negativeAcknowledge", "messageId": frame["messageId"]})
    again = await recv(consumer)
    assert loop.time() - started >= 0.09
    assert again["messageId"] == frame["messageId"] and again["redeliveryCount"] == 1
    await send_json(consumer, {"type": "negativeAcknowledge", "messageId": frame["messageId"]})
    assert (await recv(consumer))["redeliveryCount"] == 2


async def test_ack_timeout_redelivers(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer(subscriptionType="Shared", ackTimeoutMillis=1000)
    await publish(producer, "t")
    frame = await recv(consumer)
    again = await recv(consumer, timeout=3)
    assert again["messageId"] == frame["messageId"] and again["redeliveryCount"] == 1
    await ack(consumer, again)
    await nothing(consumer, 0.4)


async def test_acked_messages_are_not_redelivered_by_ack_timeout(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer(ackTimeoutMillis=1000)
    await publish(producer, "t")
    await ack(consumer, await recv(consumer))
    await nothing(consumer, 0.3)


async def test_receiver_queue_size_limits_outstanding(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer(receiverQueueSize=2)
    await publish_many(producer, ["1", "2", "3", "4"])
    first, second = await recv(consumer), await recv(consumer)
    await nothing(consumer)
    await ack(consumer, first)
    assert unb64((await recv(consumer))["payload"]) == "3"
    await nothing(consumer)
    await ack(consumer, second)
    assert unb64((await recv(consumer))["payload"]) == "4"


async def test_pull_mode_sends_only_permitted_messages(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer(pullMode="true")
    await publish_many(producer, ["1", "2", "3"])
    await nothing(consumer)
    await send_json(consumer, {"type": "permit", "permitMessages": 2})
    assert [unb64((await recv(consumer))["payload"]) for _ in range(2)] == ["1", "2"]
    await nothing(consumer)


async def test_garbage_acks_are_ignored_and_counted(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer()
    await publish(producer, "x")
    frame = await recv(consumer)
    await send_json(consumer, {"messageId": "CAEQ6AcwAA=="})  # well-formed, never delivered: ignored
    await send_json(consumer, {"type": "isEndOfTopic"})
    assert await recv(consumer) == {"endOfTopic": False}  # the connection still serves
    await ack(consumer, frame)
    await consumer.send_str("{{{")  # Pulsar drops the connection without a close frame
    closed = await consumer.receive(timeout=5)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    prefix = "streampair_broker_bad_frames_total"
    assert await metric(client.session, client.base, prefix + '{kind="ack"}') == 1
    assert await metric(client.session, client.base, prefix + '{kind="fatal"}') == 1


async def test_is_end_of_topic(client: Client) -> None:
    consumer = await client.consumer()
    await send_json(consumer, {"type": "isEndOfTopic"})
    assert await recv(consumer) == {"endOfTopic": False}


async def test_unsubscribe_deletes_the_subscription(client: Client) -> None:
    producer = await client.producer()
    consumer = await client.consumer()
    await publish(producer, "old")
    await recv(consumer)
    await send_json(consumer, {"type": "unsubscribe"})
    await send_json(consumer, {"type": "isEndOfTopic"})  # the socket stays open, as on Pulsar
    assert await recv(consumer) == {"endOfTopic": False}
    async with client.session.get(client.base + "/admin/v2/persistent/public/default/t/subscriptions") as r:
        assert await r.json() == []
    again = await client.consumer()
    await nothing(again)  # a new subscription, at the end: "old" is not delivered


async def test_non_durable_subscription_disappears_with_its_consumer(client: Client) -> None:
    consumer = await client.consumer(sub="nd", subscriptionMode="NonDurable")
    await consumer.close()
    async with client.session.get(client.base + "/admin/v2/persistent/public/default/t/stats") as r:
        stats = await r.json()
    assert "nd" not in stats["subscriptions"]


async def test_failover_delivers_to_the_highest_priority_then_fails_over(client: Client) -> None:
    producer = await client.producer()
    low = await client.consumer(subscriptionType="Failover", consumerName="b", priorityLevel=1)
    high = await client.consumer(subscriptionType="Failover", consumerName="z", priorityLevel=0)
    await publish_many(producer, ["1", "2"])
    assert unb64((await recv(high))["payload"]) == "1"
    assert unb64((await recv(high))["payload"]) == "2"
    await nothing(low)
    await high.close()
    frames = [await recv(low), await recv(low)]
    assert [unb64(f["payload"]) for f in frames] == ["1", "2"]
    assert frames[0]["redeliveryCount"] == 0  # single-active-consumer types do not count


async def test_failover_same_priority_is_chosen_by_name(client: Client) -> None:
    producer = await client.producer()
    second = await client.consumer(subscriptionType="Failover", consumerName="b")
    first = await client.consumer(subscriptionType="Failover", consumerName="a")
    await publish(producer, "x")
    assert unb64((await recv(first))["payload"]) == "x"
    await nothing(second)


async def test_shared_round_robin(client: Client) -> None:
    producer = await client.producer()
    one = await client.consumer(subscriptionType="Shared")
    two = await client.consumer(subscriptionType="Shared")
    await publish_many(producer, [str(i) for i in range(6)])
    got_one = {unb64((await recv(one))["payload"]) for _ in range(3)}
    got_two = {unb64((await recv(two))["payload"]) for _ in range(3)}
    assert got_one | got_two == {str(i) for i in range(6)}
    assert not got_one & got_two


async def test_shared_departed_consumer_unacked_go_to_the_others(client: Client) -> None:
    producer = await client.producer()
    one = await client.consumer(subscriptionType="Shared", receiverQueueSize=1)
    two = await client.consumer(subscriptionType="Shared", receiverQueueSize=1)
    await publish_many(producer, ["a", "b"])
    held = await recv(one)
    other = await recv(two)
    await one.close()
    await ack(two, other)
    again = await recv(two)
    assert again["messageId"] == held["messageId"] and again["redeliveryCount"] == 0


async def test_key_shared_same_key_same_consumer(client: Client) -> None:
    producer = await client.producer()
    one = await client.consumer(subscriptionType="Key_Shared", consumerName="c1")
    two = await client.consumer(subscriptionType="Key_Shared", consumerName="c2")
    keys = [f"k{i % 8}" for i in range(40)]
    for i, key in enumerate(keys):
        await send_json(producer, {"payload": "eA==", "key": key, "context": str(i)})
    for _ in keys:
        assert (await recv(producer))["result"] == "ok"
    owner: dict[str, int] = {}
    received = 0

    async def drain(ws: aiohttp.ClientWebSocketResponse, index: int) -> None:
        nonlocal received
        while received < len(keys):
            try:
                frame = await recv(ws, timeout=0.5)
            except TimeoutError:
                return
            received += 1
            assert owner.setdefault(frame["key"], index) == index
            await ack(ws, frame)

    await asyncio.gather(drain(one, 1), drain(two, 2))
    assert received == len(keys)
    assert set(owner.values()) == {1, 2}  # 8 keys over 2 consumers: both get some (crc32)
