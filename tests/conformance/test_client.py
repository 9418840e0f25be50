"""The client-level behaviours, through the library only, on all three targets (embedded,
Pulsar over WebSocket, Pulsar over the binary protocol): what the raw WebSocket tests of this
suite check frame by frame (test_consume, test_subscription_types, test_semantics) must also
hold for a user of `Producer`, `Consumer`, `Reader` and `Processor`, whichever the transport.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from streampair import Connector, Consumer, Message, Producer, Reader, SubscriptionType
from streampair.errors import SubscriptionBusy
from streampair.processing import DeadLetterPolicy, Outcome, Processor

from tests.conformance.conftest import Target, eventually, unique

TYPES: list[SubscriptionType] = ["Exclusive", "Shared", "Failover", "Key_Shared"]


@asynccontextmanager
async def consumer_of(
    target: Target, topic: str, sub: str, kind: SubscriptionType = "Exclusive", **options: object
) -> AsyncIterator[Consumer]:
    connector = Connector(target.settings(topic, reconnect_max_seconds=0.5))
    consumer = Consumer(connector, sub, kind, **options)  # type: ignore[arg-type]
    try:
        await consumer.connect()
        yield consumer
    finally:
        await consumer.close()
        await connector.close()


async def publish(target: Target, topic: str, texts: list[str], key: str | None = None) -> list[str]:
    connector = Connector(target.settings(topic))
    try:
        async with Producer(connector) as producer:
            return [await producer.send(t, {"text": t}, key=key if key is not None else t) for t in texts]
    finally:
        await connector.close()


async def take(consumer: Consumer, count: int, ack: bool = True, timeout: float = 15.0) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        async for message in consumer:
            out.append(message)
            if ack:
                assert await consumer.ack(message)
            if len(out) == count:
                break
    return out


async def backlog(target: Target, topic: str, sub: str) -> int:
    return int((await target.stats(topic))["subscriptions"][sub]["msgBacklog"])


async def test_what_is_acked_is_gone_and_the_rest_goes_to_the_next_consumer(target: Target) -> None:
    topic, sub = unique("ack"), unique("sub")
    async with consumer_of(target, topic, sub) as first:
        ids = await publish(target, topic, ["m0", "m1", "m2", "m3"])
        got = await take(first, 4, ack=False)
        assert [m.text() for m in got] == ["m0", "m1", "m2", "m3"]
        assert [m.id for m in got] == ids  # the producer's ids are the delivered ones
        assert got[0].properties["text"] == "m0" and got[0].key == "m0"
        assert got[0].publish_time is not None and got[0].redelivery_count == 0
        for message in (got[0], got[2], got[3]):
            assert await first.ack(message)
        await eventually(lambda: backlog(target, topic, sub), lambda n: n == 1)
    async with consumer_of(target, topic, sub) as second:
        [again] = await take(second, 1)
        assert again.text() == "m1" and again.id == ids[1]
        await publish(target, topic, ["m4"])
        [after] = await take(second, 1)
        assert after.text() == "m4"  # nothing else came before the new message


@pytest.mark.parametrize("kind", TYPES)
async def test_a_negative_ack_redelivers_the_same_message(target: Target, kind: SubscriptionType) -> None:
    topic, sub = unique("nack"), unique("sub")
    async with consumer_of(target, topic, sub, kind, negative_ack_redelivery_delay_ms=100) as consumer:
        await publish(target, topic, ["n0", "n1"], key="k")
        first, second = await take(consumer, 2, ack=False)
        assert await consumer.ack(second)
        assert await consumer.nack(first)
        [again] = await take(consumer, 1)
        assert again.id == first.id and again.data == first.data and again.key == "k"
        # Pulsar counts redeliveries only on Shared and Key_Shared (both transports, both brokers).
        assert again.redelivery_count == (1 if kind in ("Shared", "Key_Shared") else 0)
        await eventually(lambda: backlog(target, topic, sub), lambda n: n == 0)


async def test_a_second_exclusive_consumer_is_refused_then_takes_over_with_nothing_lost(
    target: Target,
) -> None:
    topic, sub = unique("excl"), unique("sub")
    connector = Connector(target.settings(topic))
    standby = Consumer(connector, sub, "Exclusive")
    try:
        async with consumer_of(target, topic, sub) as active:
            with pytest.raises(SubscriptionBusy):
                await standby.connect()
            await publish(target, topic, ["t0", "t1", "t2"])
            delivered = await take(active, 3, ack=False)
        # Released by the close; the broker frees it asynchronously, a standby retries.
        async with asyncio.timeout(10):
            while True:
                try:
                    await standby.connect()
                    break
                except SubscriptionBusy:
                    await asyncio.sleep(0.1)
        taken = await take(standby, 3)
        assert [m.id for m in taken] == [m.id for m in delivered]
        assert [m.text() for m in taken] == ["t0", "t1", "t2"]
    finally:
        await standby.close()
        await connector.close()


async def test_failover_one_consumer_receives_and_the_other_takes_over(target: Target) -> None:
    topic, sub = unique("fo"), unique("sub")
    async with (
        consumer_of(target, topic, sub, "Failover", consumer_name="a") as a,
        consumer_of(target, topic, sub, "Failover", consumer_name="b") as b,
    ):
        await publish(target, topic, [f"f{i}" for i in range(10)])
        got = await collect({"a": a, "b": b}, 10)
        assert len(got) == 1, {k: [m.text() for m in v] for k, v in got.items()}
        (active_name,) = got
        assert [m.text() for m in got[active_name]] == [f"f{i}" for i in range(10)]
        await eventually(lambda: backlog(target, topic, sub), lambda n: n == 0)
        active, other = (a, b) if active_name == "a" else (b, a)
        await active.close()
        await publish(target, topic, ["f10", "f11"])
        assert [m.text() for m in await take(other, 2)] == ["f10", "f11"]


async def collect(consumers: dict[str, Consumer], expected: int) -> dict[str, list[Message]]:
    """Every consumer iterated at once (acking) until `expected` messages arrived in all."""
    got: dict[str, list[Message]] = defaultdict(list)
    done = asyncio.Event()

    async def pump(name: str, consumer: Consumer) -> None:
        async for message in consumer:
            got[name].append(message)
            await consumer.ack(message)
            if sum(len(v) for v in got.values()) >= expected:
                done.set()

    tasks = [asyncio.create_task(pump(name, c)) for name, c in consumers.items()]
    try:
        async with asyncio.timeout(15):
            await done.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return got


async def test_shared_consumers_split_the_messages_each_once(target: Target) -> None:
    topic, sub = unique("sh"), unique("sub")
    async with (
        consumer_of(target, topic, sub, "Shared", consumer_name="a", receiver_queue_size=5) as a,
        consumer_of(target, topic, sub, "Shared", consumer_name="b", receiver_queue_size=5) as b,
    ):
        texts = [f"s{i}" for i in range(40)]
        await publish(target, topic, texts)
        got = await collect({"a": a, "b": b}, len(texts))
        received = sorted(m.text() for ms in got.values() for m in ms)
        assert received == sorted(texts)  # everything, nothing twice
        assert set(got) == {"a", "b"}, "one consumer got everything"
        stats = (await target.stats(topic))["subscriptions"][sub]
        assert stats["type"] == "Shared"
        assert sorted(c["consumerName"] for c in stats["consumers"]) == ["a", "b"]


async def test_key_shared_sends_each_key_to_one_consumer(target: Target) -> None:
    topic, sub = unique("ks"), unique("sub")
    async with (
        consumer_of(target, topic, sub, "Key_Shared", consumer_name="a") as a,
        consumer_of(target, topic, sub, "Key_Shared", consumer_name="b") as b,
    ):
        keys = [f"key-{k}" for k in range(16)]
        connector = Connector(target.settings(topic))
        async with Producer(connector) as producer:
            for n in range(3):
                for key in keys:
                    await producer.send(f"{key}/{n}", key=key)
        await connector.close()
        got = await collect({"a": a, "b": b}, 48)
        owner: dict[str, set[str]] = defaultdict(set)
        for name, messages in got.items():
            for message in messages:
                assert message.key == message.text().split("/")[0]
                owner[message.key].add(name)
        assert all(len(names) == 1 for names in owner.values()), dict(owner)
        assert set(owner) == set(keys) and set(got) == {"a", "b"}


async def test_a_cancelled_receive_loses_nothing(target: Target) -> None:
    topic, sub = unique("cancel"), unique("sub")
    async with consumer_of(target, topic, sub) as consumer:
        for _ in range(3):  # receives given up on an empty topic (a timeout around iteration)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(aiter(consumer)), 0.2)
        await publish(target, topic, ["c0", "c1", "c2"])
        assert [m.text() for m in await take(consumer, 3)] == ["c0", "c1", "c2"]


async def test_unsubscribe_deletes_the_subscription(target: Target) -> None:
    topic, sub = unique("unsub"), unique("sub")
    async with consumer_of(target, topic, sub) as consumer:
        await publish(target, topic, ["u0"])
        assert sub in (await target.stats(topic))["subscriptions"]
        await consumer.unsubscribe()
    await eventually(lambda: target.stats(topic), lambda s: sub not in s["subscriptions"])


@pytest.mark.parametrize("kind", TYPES)
async def test_the_processor_dead_letters_a_poison_message_and_the_rest_flows(
    target: Target, kind: SubscriptionType
) -> None:
    """processing.py on top of each transport: retry in place (Exclusive, Failover) or delayed
    nack (Shared, Key_Shared), then the dead-letter copy, then the ack; nothing else lost."""
    topic, sub = unique("poison"), unique("sub")
    policy = DeadLetterPolicy(max_delivery_attempts=3, first_delay_seconds=0.02, max_delay_seconds=0.1)
    attempts: Counter[str] = Counter()
    handled: list[str] = []
    outcomes: Counter[Outcome] = Counter()

    async def handler(message: Message) -> None:
        attempts[message.text()] += 1
        if message.text() == "p3" or (message.text() == "p6" and attempts["p6"] == 1):
            raise ValueError(f"cannot handle {message.text()}")
        handled.append(message.text())

    async with consumer_of(target, topic, sub, kind, negative_ack_redelivery_delay_ms=100) as consumer:
        processor = Processor(consumer, handler, policy)
        try:
            texts = [f"p{i}" for i in range(8)]
            await publish(target, topic, texts)
            async with asyncio.timeout(30):
                async for message in consumer:
                    outcomes[await processor.process(message)] += 1
                    if outcomes["handled"] + outcomes["dead_lettered"] == len(texts):
                        break
        finally:
            await processor.close()
    assert outcomes["dead_lettered"] == 1 and attempts["p3"] == 3
    assert attempts["p6"] == 2 and sorted(handled) == sorted(t for t in texts if t != "p3")
    if kind in ("Exclusive", "Failover"):
        assert handled == [t for t in texts if t != "p3"]  # retried in place: the order holds
    connector = Connector(target.settings(f"{topic}-{sub}-DLQ"))
    reader = Reader(connector, "earliest")
    try:
        async with asyncio.timeout(10):
            copy = await anext(aiter(reader))
    finally:
        await reader.close()
        await connector.close()
    assert copy.text() == "p3" and copy.key == "p3" and copy.properties["text"] == "p3"
    assert copy.properties["DELIVERY_ATTEMPTS"] == "3" and copy.properties["ERROR_CLASS"] == "ValueError"
    await eventually(lambda: backlog(target, topic, sub), lambda n: n == 0)
