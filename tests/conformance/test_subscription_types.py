"""Who gets what: Failover (one active, the other takes over), Shared (split, nothing lost)
and Key_Shared (one key, one consumer)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import aiohttp
import pytest

from tests.conformance.conftest import (
    WS,
    Frame,
    Target,
    ack,
    eventually,
    nothing_within,
    publish,
    recv,
    recv_n,
    texts_of,
    unique,
)

pytestmark = pytest.mark.ws_only("WebSocket frames: the four types through the library are in test_client.py")

#: How long a consumer that must get nothing is watched. An absence has no event to await;
#: by then the active consumer has received and acknowledged everything, so a misrouted
#: message would already be on its way. Short, to keep the suite fast.
QUIET_SECONDS = 0.5


async def _collect(consumers: dict[str, WS], expected: int, timeout: float = 15.0) -> dict[str, list[Frame]]:
    """Read every consumer concurrently (acking each message) until `expected` arrived in all."""
    got: dict[str, list[Frame]] = defaultdict(list)
    done = asyncio.Event()

    async def pump(name: str, ws: WS) -> None:
        while True:
            frame = await recv(ws, timeout=timeout)
            got[name].append(frame)
            await ack(ws, frame)
            if sum(len(v) for v in got.values()) >= expected:
                done.set()

    tasks = [asyncio.create_task(pump(name, ws)) for name, ws in consumers.items()]
    try:
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait(
            [waiter, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in finished:
            if task is not waiter:
                task.result()  # a pump failed: raise its error
        assert done.is_set(), f"only {sum(len(v) for v in got.values())} of {expected} arrived: {dict(got)}"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        waiter.cancel()
    return got


async def _a_and_b(target: Target, prefix: str, kind: str) -> tuple[str, str, dict[str, WS]]:
    """A new topic and subscription of `kind`, with consumers named a and b on it."""
    topic, sub = unique(prefix), unique("sub")
    consumers = {
        name: await target.consumer(topic, sub, subscriptionType=kind, consumerName=name)
        for name in ("a", "b")
    }
    return topic, sub, consumers


async def test_failover_one_consumer_receives_and_the_other_takes_over_when_it_leaves(target: Target) -> None:
    topic, sub, consumers = await _a_and_b(target, "fo", "Failover")
    stats = await target.stats(topic)
    assert stats["subscriptions"][sub]["type"] == "Failover"
    assert sorted(c["consumerName"] for c in stats["subscriptions"][sub]["consumers"]) == ["a", "b"]

    producer = await target.producer(topic)
    first_batch = [f"f{i}" for i in range(10)]
    await publish(producer, first_batch)
    got = await _collect(consumers, len(first_batch))
    assert len(got) == 1, f"both consumers received: { ({k: texts_of(v) for k, v in got.items()}) }"
    (active_name,) = got
    standby_name = "b" if active_name == "a" else "a"
    assert texts_of(got[active_name]) == first_batch  # all of them, in order
    await nothing_within(consumers[standby_name], QUIET_SECONDS)
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 0)

    await consumers[active_name].close()
    second_batch = [f"f{i}" for i in range(10, 13)]
    await publish(producer, second_batch)
    standby = consumers[standby_name]
    taken_over = [await recv(standby) for _ in second_batch]
    assert texts_of(taken_over) == second_batch
    await standby.close()
    await producer.close()


async def _shared(target: Target, count: int) -> tuple[list[str], dict[str, list[Frame]], str, str]:
    topic, sub, consumers = await _a_and_b(target, "sh", "Shared")
    producer = await target.producer(topic)
    texts = [f"s{i}" for i in range(count)]
    await publish(producer, texts)
    got = await _collect(consumers, len(texts))
    for ws in consumers.values():
        await nothing_within(ws, 0.1)  # nothing beyond the expected count (no duplicates)
        await ws.close()
    await producer.close()
    return texts, got, topic, sub


async def test_shared_consumers_together_get_every_message_once(target: Target) -> None:
    texts, got, topic, sub = await _shared(target, 20)
    received = [t for frames in got.values() for t in texts_of(frames)]
    assert sorted(received) == sorted(texts)  # the union is everything, and nothing twice
    for frames in got.values():  # each consumer sees its share in publish order
        mine = texts_of(frames)
        assert mine == sorted(mine, key=texts.index)
    assert (await target.stats(topic))["subscriptions"][sub]["type"] == "Shared"


async def test_shared_round_robin_gives_both_consumers_a_share(target: Target) -> None:
    _, got, _, _ = await _shared(target, 20)
    shares = {name: len(frames) for name, frames in got.items()}
    assert set(shares) == {"a", "b"}, f"one consumer got everything: {shares}"


async def test_key_shared_sends_each_key_to_one_consumer(target: Target) -> None:
    topic, _, consumers = await _a_and_b(target, "ks", "Key_Shared")
    producer = await target.producer(topic)
    keys = [f"key-{k}" for k in range(16)]
    texts = [f"{key}/{n}" for n in range(3) for key in keys]
    await publish(producer, texts, key=lambda text: text.split("/")[0])
    got = await _collect(consumers, len(texts))
    owner: dict[str, set[str]] = defaultdict(set)
    for name, frames in got.items():
        for frame in frames:
            assert frame["key"] == texts_of([frame])[0].split("/")[0]
            owner[frame["key"]].add(name)
    assert all(len(names) == 1 for names in owner.values()), dict(owner)
    assert set(owner) == set(keys)
    assert set(got) == {"a", "b"}, "16 keys all hashed to one consumer"
    received = [t for frames in got.values() for t in texts_of(frames)]
    assert sorted(received) == sorted(texts)
    for frames in got.values():  # per key, publish order
        mine = texts_of(frames)
        assert mine == sorted(mine, key=texts.index)
    for ws in consumers.values():
        await ws.close()
    await producer.close()


async def test_multi_topic_consumer_by_list_and_by_pattern(target: Target) -> None:
    """/ws/v3/consumer/{sub}?topics=... (short names are in public/default) and ?topicsPattern=."""
    prefix = unique("multi")
    first, second = f"{prefix}-a", f"{prefix}-b"
    for topic in (first, second):  # the pattern matches topics that exist when it subscribes
        async with target.session.put(target.admin_url(topic), json={}) as response:
            assert response.status == 204
    by_list = await target.session.ws_connect(
        f"{target.ws}/ws/v3/consumer/s1",
        params={"topics": f"{first},persistent://public/default/{second}", "subscriptionType": "Shared"},
    )
    by_pattern = await target.session.ws_connect(
        f"{target.ws}/ws/v3/consumer/s2", params={"topicsPattern": f"persistent://public/default/{prefix}-.*"}
    )
    await publish(await target.producer(first), ["from-a"])
    await publish(await target.producer(second), ["from-b"])
    for consumer in (by_list, by_pattern):
        frames = await recv_n(consumer, 2)
        assert sorted(texts_of(frames)) == ["from-a", "from-b"]
        for frame in frames:
            await ack(consumer, frame)
    await by_list.close()
    # Pulsar closes the old consumer asynchronously: a reconnect right after may get a brief 409.
    for attempt in range(20):
        try:
            again = await target.session.ws_connect(
                f"{target.ws}/ws/v3/consumer/s1", params={"topics": f"{first},{second}"}
            )
            break
        except aiohttp.WSServerHandshakeError as error:
            assert error.status == 409 and attempt < 19
            await asyncio.sleep(0.1)
    await nothing_within(again, 0.5)  # both acks reached their topic's subscription
    stats = await target.stats(first)
    assert {"s1", "s2"} <= set(stats["subscriptions"])
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await target.session.ws_connect(f"{target.ws}/ws/v3/consumer/", params={"topics": first})
    assert refused.value.status == 400


async def test_multi_topic_consumer_shares_one_receiver_queue(target: Target) -> None:
    prefix = unique("multiq")
    topics = [f"{prefix}-a", f"{prefix}-b"]
    consumer = await target.session.ws_connect(
        f"{target.ws}/ws/v3/consumer/s", params={"topics": ",".join(topics), "receiverQueueSize": "1"}
    )
    for topic in topics:
        await publish(await target.producer(topic), [f"{topic}-1", f"{topic}-2"])
    seen = []
    for _ in range(4):
        frame = await recv(consumer)
        await nothing_within(consumer, 0.3)  # one unacknowledged message at a time, over all topics
        seen.append(frame)
        await ack(consumer, frame)
    assert sorted(texts_of(seen)) == sorted(f"{t}-{i}" for t in topics for i in (1, 2))
