"""Processor and DeadLetterPolicy against the embedded broker: ack, retry, dead-letter, never lose."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from broker.testing import running_broker
from streampair import ClientConfig, Connector, Consumer, Message, Producer, Reader, SubscriptionType
from streampair.processing import DeadLetterPolicy, Outcome, Processor

FAST = DeadLetterPolicy(max_delivery_attempts=3, first_delay_seconds=0.01, max_delay_seconds=0.05)


class Poison(Exception):
    pass


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    async with running_broker(tmp_path / "data") as url:
        yield url.replace("http://", "ws://")


def config(base: str, stream: str, **kw: object) -> ClientConfig:
    return ClientConfig(url=base, stream=stream, reconnect_max_seconds=0.2, **kw)  # type: ignore[arg-type]


async def subscribe(base: str, stream: str, kind: SubscriptionType = "Exclusive") -> None:
    """Create the subscription (it starts at the end of the stream, as on Pulsar)."""
    connector = Connector(config(base, stream))
    consumer = Consumer(connector, "sub", kind)
    await consumer.connect()
    await consumer.close()
    await connector.close()


async def publish(base: str, stream: str, messages: list[tuple[str, dict[str, str]]]) -> None:
    connector = Connector(config(base, stream))
    async with Producer(connector) as producer:
        for text, properties in messages:
            await producer.send(text, properties, key=text)
    await connector.close()


async def dead_letter_the_next(cfg: ClientConfig, error: Exception) -> None:
    """As subscription `sub`, fail the next message with `error`: dead-lettered at the first attempt."""
    connector = Connector(cfg)
    consumer = Consumer(connector, "sub")

    async def handler(_: Message) -> None:
        raise error

    once = DeadLetterPolicy(max_delivery_attempts=1)
    assert await process_first(consumer, handler, once) == "dead_lettered"
    await consumer.close()
    await connector.close()


async def process_first(
    consumer: Consumer, handler: Callable[[Message], Awaitable[None]], policy: DeadLetterPolicy
) -> Outcome:
    """The outcome of the first message to arrive, processed with `policy`."""
    processor = Processor(consumer, handler, policy)
    try:
        async for message in consumer:
            return await processor.process(message)
        raise AssertionError("the consumer stopped before a message came")
    finally:
        await processor.close()


async def read_all(base: str, stream: str, count: int) -> list[Message]:
    connector = Connector(config(base, stream))
    reader = Reader(connector, "earliest")
    out: list[Message] = []
    try:
        async with asyncio.timeout(10):
            async for message in reader:
                out.append(message)
                if len(out) == count:
                    break
    finally:
        await reader.close()
        await connector.close()
    return out


async def run(
    base: str,
    stream: str,
    kind: SubscriptionType,
    policy: DeadLetterPolicy,
    fails: dict[str, int],
    expected: int,
) -> tuple[list[str], dict[str, int], Counter[Outcome]]:
    """Consume until `expected` messages were handled or dead-lettered.

    `fails[text]` is how many attempts of that message raise (a large number: always).
    Returns the texts handled in order, the attempts per text and the outcomes."""
    connector = Connector(config(base, stream))
    consumer = Consumer(connector, "sub", kind, negative_ack_redelivery_delay_ms=100)
    attempts: Counter[str] = Counter()
    handled: list[str] = []

    async def handler(message: Message) -> None:
        attempts[message.text()] += 1
        if attempts[message.text()] <= fails.get(message.text(), 0):
            raise Poison(f"cannot handle {message.text()}")
        handled.append(message.text())

    processor = Processor(consumer, handler, policy)
    outcomes: Counter[Outcome] = Counter()
    try:
        async with asyncio.timeout(20):
            async for message in consumer:
                outcomes[await processor.process(message)] += 1
                if outcomes["handled"] + outcomes["dead_lettered"] == expected:
                    break
    finally:
        await processor.close()
        await consumer.close()
        await connector.close()
    return handled, dict(attempts), outcomes


@pytest.mark.parametrize("kind", ["Exclusive", "Failover", "Shared", "Key_Shared"])
async def test_a_failing_message_is_retried_then_dead_lettered_and_the_rest_flows(
    base: str, kind: SubscriptionType
) -> None:
    await subscribe(base, "orders", kind)
    texts = [f"m{i}" for i in range(10)]
    await publish(base, "orders", [(t, {"seq": t[1:], "keep": "me"}) for t in texts])
    handled, attempts, outcomes = await run(base, "orders", kind, FAST, {"m3": 99, "m6": 1}, expected=10)

    assert outcomes["dead_lettered"] == 1 and attempts["m3"] == 3  # MAX_DELIVERY_ATTEMPTS, no more
    assert attempts["m6"] == 2 and "m6" in handled  # failed once, then handled: not dead-lettered
    assert sorted(handled) == sorted(t for t in texts if t != "m3")
    if kind in ("Exclusive", "Failover"):
        assert handled == [t for t in texts if t != "m3"]  # retried in place: the order holds
    [copy] = await read_all(base, "orders-sub-DLQ", 1)
    assert copy.text() == "m3" and copy.key == "m3"
    props = copy.properties
    assert props["keep"] == "me" and props["seq"] == "3"  # the original properties stay
    assert props["REAL_TOPIC"] == "persistent://public/default/orders"
    assert props["DELIVERY_ATTEMPTS"] == "3" and props["ERROR_CLASS"] == "Poison"
    assert props["ERROR_MESSAGE"] == "cannot handle m3" and props["ORIGIN_MESSAGE_ID"]
    # Everything was acked: a new consumer on the subscription receives nothing more.
    assert await nothing_left(base, "orders", kind)


async def nothing_left(base: str, stream: str, kind: SubscriptionType) -> bool:
    connector = Connector(config(base, stream))
    consumer = Consumer(connector, "sub", kind)
    try:
        await consumer.connect()
        async with asyncio.timeout(0.5):
            async for _ in consumer:
                return False
    except TimeoutError:
        return True
    finally:
        await consumer.close()
        await connector.close()
    return True


async def test_zero_attempts_retries_forever_and_a_stop_leaves_the_message_unacked(base: str) -> None:
    await subscribe(base, "forever")
    await publish(base, "forever", [("stuck", {})])
    connector = Connector(config(base, "forever"))
    consumer = Consumer(connector, "sub")
    attempts = 0

    async def handler(_: Message) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 12:
            consumer.interrupt()  # stop mid-retry
        raise Poison("never works")

    policy = DeadLetterPolicy(max_delivery_attempts=0, first_delay_seconds=0.001, max_delay_seconds=0.001)
    assert await process_first(consumer, handler, policy) == "unacked"
    await consumer.close()
    await connector.close()
    assert attempts == 12  # far past the default 5: 0 means never dead-letter
    # Not acked, not dead-lettered: the next consumer gets it.
    handled, _, outcomes = await run(base, "forever", "Exclusive", FAST, {}, expected=1)
    assert handled == ["stuck"] and outcomes["handled"] == 1


async def test_a_dead_letter_copy_that_cannot_be_stored_keeps_the_original(base: str) -> None:
    await subscribe(base, "keep")
    await publish(base, "keep", [("bad", {})])
    connector = Connector(config(base, "keep"))
    consumer = Consumer(connector, "sub")
    # The broker refuses this name (a 400 on the producer handshake): the copy cannot be stored.
    policy = DeadLetterPolicy(max_delivery_attempts=1, stream="x" * 300)

    async def handler(_: Message) -> None:
        raise Poison("always")

    processor = Processor(consumer, handler, policy)
    async for message in consumer:
        task = asyncio.create_task(processor.process(message))
        await asyncio.sleep(0.3)  # it keeps trying to store the copy, without acking
        consumer.interrupt()
        assert await task == "unacked"
        break
    await processor.close()
    await consumer.close()
    await connector.close()
    handled, _, _ = await run(base, "keep", "Exclusive", FAST, {}, expected=1)
    assert handled == ["bad"]  # never lost


async def test_credentials_never_reach_the_dead_letter_copy(tmp_path: Path) -> None:
    token = "s3cr3t-token-value"
    async with running_broker(tmp_path / "data", token=token) as url:
        base = url.replace("http://", "ws://")
        cfg = config(base, "secret", auth_token=token)
        first = Consumer(Connector(cfg), "sub")
        await first.connect()
        await first.close()
        await first.connector.close()
        async with Producer(Connector(cfg)) as producer:
            await producer.send(b"x")
        await producer.connector.close()
        await dead_letter_the_next(cfg, Poison(f"failed with Authorization: Bearer {token}"))
        reader_connector = Connector(ClientConfig(url=base, stream="secret-sub-DLQ", auth_token=token))
        reader = Reader(reader_connector, "earliest")
        async for copy in reader:
            assert token not in repr(copy.properties)
            assert copy.properties["ERROR_MESSAGE"] == "failed with Authorization: Bearer ***"
            break
        await reader.close()
        await reader_connector.close()


def test_the_policy_doubles_its_delay_up_to_the_cap() -> None:
    policy = DeadLetterPolicy(max_delivery_attempts=5, first_delay_seconds=0.5, max_delay_seconds=3)
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)
    assert not DeadLetterPolicy(max_delivery_attempts=0).gives_up_after(10**6)
    assert policy.stream_for("orders", "billing") == "orders-billing-DLQ"
    assert DeadLetterPolicy(stream="poison").stream_for("orders", "billing") == "poison"
    with pytest.raises(ValueError):
        DeadLetterPolicy(max_delivery_attempts=-1)


async def test_a_message_near_the_frame_limit_is_dead_lettered_without_the_error_text(base: str) -> None:
    limited = config(base, "big", max_frame_bytes=4096)
    await subscribe(base, "big")
    publisher = Connector(limited)
    async with Producer(publisher) as producer:
        await producer.send(b"x" * 2865)  # a frame of about 3,850 bytes: it fits, its full copy would not
    await publisher.close()
    await dead_letter_the_next(limited, Poison("e" * 500))
    [copy] = await read_all(base, "big-sub-DLQ", 1)
    assert len(copy.data) == 2865 and copy.properties["ERROR_CLASS"] == "Poison"
    assert "ERROR_MESSAGE" not in copy.properties  # dropped to fit; the log line still has it
