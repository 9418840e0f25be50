"""What parameters and frames do once accepted, on both targets (scripts/pulsar/FINDINGS.md,
"Semantics"): Earliest, delayed delivery, event time, dead letter topics, priority on Shared,
receiver queue, terminate and isEndOfTopic, and the exact shape of ids and times."""

from __future__ import annotations

import asyncio
import base64
import re
import time

import aiohttp
import pytest

from tests.conformance.conftest import (
    Target,
    ack,
    b64,
    eventually,
    nack,
    nothing_within,
    publish,
    recv,
    recv_n,
    send,
    texts_of,
    unique,
)

pytestmark = pytest.mark.ws_only(
    "WebSocket frames and parameters the library does not expose (event time, delayed delivery, DLQ topic)"
)

#: Java's ISO_OFFSET_DATE_TIME in UTC: no trailing zeros in the fraction, none at all for .000.
JAVA_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,2}[1-9])?Z")


async def test_earliest_starts_a_new_subscription_at_the_oldest_message(target: Target) -> None:
    topic = unique("earliest")
    producer = await target.producer(topic)
    await publish(producer, ["before-1", "before-2"])
    consumer = await target.consumer(topic, "s", subscriptionInitialPosition="Earliest")
    assert texts_of(await recv_n(consumer, 2)) == ["before-1", "before-2"]
    latest = await target.consumer(topic, "late")  # Latest, the default: nothing of before
    await nothing_within(latest, 0.5)


async def test_ids_and_times_have_pulsars_exact_shape(target: Target) -> None:
    topic = unique("shape")
    consumer = await target.consumer(topic, "s")
    producer = await target.producer(topic)
    [message_id] = await publish(producer, ["x"])
    frame = await recv(consumer)
    raw = base64.b64decode(message_id)
    # MessageIdData: ledgerId (tag 0x08), entryId (0x10), batch_size 0 (0x30 0x00) last.
    assert raw[0] == 0x08 and raw[-2:] == b"\x30\x00", raw
    assert frame["messageId"] == message_id
    assert JAVA_INSTANT.fullmatch(frame["publishTime"]), frame["publishTime"]
    assert list(frame) == ["messageId", "payload", "properties", "publishTime", "redeliveryCount"]


@pytest.mark.parametrize(
    ("sent", "delivered"),
    [
        ("2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z"),
        ("2026-01-02T05:04:05.5+02:00", "2026-01-02T03:04:05.5Z"),
        ("2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05.123Z"),
        ("2026-01-02T03:04:05.100Z", "2026-01-02T03:04:05.1Z"),
        ("2026-01-02T03:04Z", "2026-01-02T03:04:00Z"),
    ],
)
async def test_event_time_round_trip(target: Target, sent: str, delivered: str) -> None:
    topic = unique("event")
    consumer = await target.consumer(topic, "s")
    producer = await target.producer(topic)
    await send(producer, {"payload": b64("e"), "eventTime": sent, "key": "k"})
    assert (await recv(producer))["result"] == "ok"
    frame = await recv(consumer)
    assert frame["eventTime"] == delivered
    assert list(frame) == [
        "messageId", "payload", "properties", "publishTime", "redeliveryCount", "eventTime", "key"
    ]  # fmt: skip


@pytest.mark.parametrize(("type_", "delayed"), [("Shared", True), ("Key_Shared", True), ("Exclusive", False)])
async def test_deliver_after_is_honoured_on_shared_types_only(
    target: Target, type_: str, delayed: bool
) -> None:
    topic = unique("delay")
    consumer = await target.consumer(topic, "s", subscriptionType=type_)
    producer = await target.producer(topic)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send(producer, {"payload": b64("late"), "deliverAfterMs": 1500, "context": "d"})
    assert (await recv(producer))["result"] == "ok"
    await send(producer, {"payload": b64("now"), "context": "n"})
    assert (await recv(producer))["result"] == "ok"
    first = await recv(consumer)
    if not delayed:
        assert texts_of([first, await recv(consumer)]) == ["late", "now"]
        assert loop.time() - started < 1.0
        return
    assert texts_of([first]) == ["now"]  # the delayed one waits; the next is not held behind it
    late = await recv(consumer, timeout=10)
    waited = loop.time() - started
    # Pulsar's delayed-delivery tracker ticks every second: 1.5 s arrives after 1.5-2.5 s.
    assert texts_of([late]) == ["late"] and 1.4 <= waited < 4.0, waited


async def test_deliver_at_in_the_future(target: Target) -> None:
    topic = unique("deliverat")
    consumer = await target.consumer(topic, "s", subscriptionType="Shared")
    producer = await target.producer(topic)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send(producer, {"payload": b64("at"), "deliverAt": int(time.time() * 1000) + 1200})
    assert (await recv(producer))["result"] == "ok"
    await nothing_within(consumer, 0.8)
    assert texts_of([await recv(consumer)]) == ["at"]
    assert loop.time() - started >= 1.1


@pytest.mark.parametrize("type_", ["Shared", "Key_Shared"])
async def test_dead_letter_topic_after_max_redeliveries(target: Target, type_: str) -> None:
    topic, sub = unique("dlq"), "s"
    dead = await target.consumer(f"{topic}-{sub}-DLQ", "watch")  # the DLQ gets no subscription itself
    consumer = await target.consumer(
        topic, sub, subscriptionType=type_, maxRedeliverCount="1", negativeAckRedeliveryDelay="100"
    )
    producer = await target.producer(topic)
    await send(producer, {"payload": b64("poison"), "properties": {"p": "1"}, "key": "k"})
    assert (await recv(producer))["result"] == "ok"
    counts = []
    for _ in range(2):
        frame = await recv(consumer)
        counts.append(frame["redeliveryCount"])
        await nack(consumer, frame)
    assert counts == [0, 1]
    letter = await recv(dead)
    assert texts_of([letter]) == ["poison"] and letter["key"] == "k"
    props = letter["properties"]
    assert props["p"] == "1"
    assert props["REAL_TOPIC"] == f"persistent://public/default/{topic}"
    assert props["REAL_SUBSCRIPTION"] == sub
    assert re.fullmatch(r"\d+:\d+:-1", props["ORIGIN_MESSAGE_ID"])
    assert props["ORIGIN_MESSAGE_IDY_TIME"] == props["ORIGIN_MESSAGE_ID"]  # sic, Pulsar 4.0.7
    await nothing_within(consumer, 0.5)  # acknowledged on the original subscription
    stats = await eventually(
        lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 0
    )
    assert stats["subscriptions"][sub]["msgBacklog"] == 0


async def test_dead_letter_topic_by_name(target: Target) -> None:
    topic, name = unique("dlqn"), unique("letters")
    dead = await target.consumer(name, "watch")
    consumer = await target.consumer(
        topic, "s", subscriptionType="Shared", maxRedeliverCount="1",
        deadLetterTopic=name, negativeAckRedeliveryDelay="100",
    )  # fmt: skip
    producer = await target.producer(topic)
    await publish(producer, ["poison"])
    for _ in range(2):
        await nack(consumer, await recv(consumer))
    assert texts_of([await recv(dead)]) == ["poison"]


async def test_exclusive_never_dead_letters(target: Target) -> None:
    topic = unique("dlqx")
    consumer = await target.consumer(topic, "s", maxRedeliverCount="1", negativeAckRedeliveryDelay="100")
    producer = await target.producer(topic)
    await publish(producer, ["again"])
    for _ in range(3):
        frame = await recv(consumer)
        assert frame["redeliveryCount"] == 0  # Exclusive does not count, so never reaches the limit
        await nack(consumer, frame)
    await ack(consumer, await recv(consumer))


async def test_priority_level_on_shared(target: Target) -> None:
    topic = unique("prio")
    low = await target.consumer(topic, "s", subscriptionType="Shared", priorityLevel="1", consumerName="low")
    high = await target.consumer(
        topic, "s", subscriptionType="Shared", priorityLevel="0", consumerName="high"
    )
    producer = await target.producer(topic)
    texts = [f"m{i}" for i in range(10)]
    await publish(producer, texts)
    assert texts_of(await recv_n(high, 10)) == texts
    await nothing_within(low, 0.5)


@pytest.mark.parametrize("size", ["1", "0"])
async def test_receiver_queue_of_one(target: Target, size: str) -> None:
    topic = unique("rq")
    consumer = await target.consumer(topic, "s", receiverQueueSize=size)
    producer = await target.producer(topic)
    await publish(producer, ["a", "b", "c"])
    first = await recv(consumer)
    await nothing_within(consumer, 0.5)
    await ack(consumer, first)
    assert texts_of([await recv(consumer)]) == ["b"]


async def test_terminate(target: Target) -> None:
    topic = unique("term")
    consumer = await target.consumer(topic, "s")
    producer = await target.producer(topic)
    await publish(producer, ["last"])
    await ack(consumer, await recv(consumer))
    async with target.session.post(target.admin_url(topic) + "/terminate") as response:
        assert response.status == 200
        last = await response.json()
    # The keys, not their order: Pulsar's own order varies between runs (a JSON object has none).
    assert set(last) == {"ledgerId", "entryId", "partitionIndex", "batchIndex", "batchSize"}
    assert (last["partitionIndex"], last["batchIndex"], last["batchSize"]) == (-1, -1, 0)
    # An open producer's next message fails; a new producer is refused with 503.
    await send(producer, {"payload": b64("more"), "context": "m"})
    refused = await recv(producer)
    assert refused["result"] == "send-error:8" and "TopicTerminatedException" in refused["errorMsg"]
    assert refused["context"] == "m"
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await target.producer(topic)
    assert error.value.status == 503

    async def end_of_topic() -> bool:
        await send(consumer, {"type": "isEndOfTopic"})
        return bool((await recv(consumer))["endOfTopic"])

    assert await eventually(end_of_topic, lambda reached: reached)  # Pulsar tells it within ~2 s
    # A reader (on a topic without subscriptions: the embedded broker deletes what every
    # subscription acknowledged at once, Pulsar only when its ledger rolls over).
    other = unique("term-reader")
    producer = await target.producer(other)
    await publish(producer, ["only"])
    async with target.session.post(target.admin_url(other) + "/terminate") as response:
        assert response.status == 200
    reader = await target.reader(other, messageId="earliest")
    assert texts_of([await recv(reader)]) == ["only"]

    async def reader_at_end() -> bool:
        await send(reader, {"type": "isEndOfTopic"})
        return bool((await recv(reader))["endOfTopic"])

    assert await eventually(reader_at_end, lambda reached: reached)
    async with target.session.post(target.admin_url(unique("nope")) + "/terminate") as response:
        assert response.status == 404


async def test_pull_mode_delivers_only_what_was_permitted(target: Target) -> None:
    """Pulsar's ProxyPublishConsumeTest.socketPullModeTest, and socketTestEndOfTopic's checks."""
    topic = unique("pull")
    first = await target.consumer(topic, "s", subscriptionType="Shared", pullMode="true")
    second = await target.consumer(topic, "s", subscriptionType="Shared", pullMode="true")
    producer = await target.producer(topic)
    await publish(producer, [f"m{i}" for i in range(20)])
    await nothing_within(first, 0.3)
    await send(first, {"type": "permit", "permitMessages": 3})
    for _ in range(3):
        await send(second, {"type": "permit", "permitMessages": 2})
    got_first, got_second = await recv_n(first, 3), await recv_n(second, 6)
    await nothing_within(first, 0.3)
    await nothing_within(second, 0.1)
    assert len(set(texts_of(got_first)) | set(texts_of(got_second))) == 9
    await send(first, {"type": "isEndOfTopic"})
    assert await recv(first) == {"endOfTopic": False}


async def test_terminate_an_empty_topic(target: Target) -> None:
    topic = unique("term-empty")
    async with target.session.put(target.admin_url(topic), json={}) as response:
        assert response.status == 204
    async with target.session.post(target.admin_url(topic) + "/terminate") as response:
        assert response.status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await target.producer(topic)
    assert refused.value.status == 503


async def test_non_persistent_topics_deliver_only_to_who_is_there(target: Target) -> None:
    topic = unique("np")
    base = target.ws + "/ws/v2/{role}/non-persistent/public/default/" + topic
    producer = await target.session.ws_connect(base.format(role="producer"))
    lost = await publish(producer, ["nobody-listens"])
    assert lost == ["CAAQADAA"]  # every message of a non-persistent topic has this id
    consumer = await target.session.ws_connect(
        base.format(role="consumer") + "/s", params={"subscriptionInitialPosition": "Earliest"}
    )
    reader = await target.session.ws_connect(base.format(role="reader"), params={"messageId": "earliest"})
    await nothing_within(consumer, 0.3)  # nothing was kept
    assert await publish(producer, ["live-1", "live-2"]) == ["CAAQADAA", "CAAQADAA"]
    frames = await recv_n(consumer, 2)
    assert texts_of(frames) == ["live-1", "live-2"]
    assert {f["messageId"] for f in frames} == {"CAAQADAA"}
    for frame in frames:
        await ack(consumer, frame)
    assert texts_of(await recv_n(reader, 2)) == ["live-1", "live-2"]
    async with target.session.get(
        f"{target.http}/admin/v2/non-persistent/public/default/{topic}/stats"
    ) as response:
        assert response.status == 200
