"""Any message a broker can deliver, end to end: the consumer never exits, every message is acked or
dead-lettered, and its memory stays bounded (issue #12's property).

Messages come from hypothesis: arbitrary payload bytes, keys and property maps, straight to the
broker through the library's Producer and as JSON through the producer service's POST /messages.
Some carry the consumer's FAIL_ON_PROPERTY, so the handler raises on them: they must end in the
dead-letter stream, the rest acknowledged; the subscription's backlog must drain to zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streampair import ClientConfig, Connector, Producer, StreamAdmin

from harness import Cluster, Service, until

POISON = "poison"
SUBSCRIPTION = "consumer-subscription"
RSS_BOUND_MB = 120  # the consumer starts near 55 MB; README: bounded tracking adds a few MB at most

texts = st.text(max_size=40)  # valid text only: a lone surrogate is refused at the edge (422)
properties = st.dictionaries(
    st.sampled_from(["producer_id", "seq", "sent_at", POISON]) | texts,
    texts | st.integers(min_value=-(10**40), max_value=10**40).map(str),
    max_size=6,
)
messages = st.lists(
    st.tuples(st.binary(max_size=2000), st.none() | texts, properties, st.booleans()), min_size=1, max_size=40
)


class World:
    def __init__(self, cluster: Cluster, consumer: Service, producer: Service, url: str) -> None:
        self.cluster, self.consumer, self.producer, self.url = cluster, consumer, producer, url
        self.sent = 0
        self.poisoned = 0


pytestmark = pytest.mark.asyncio(loop_scope="module")  # one cluster for the whole module


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    cluster = Cluster(tmp_path_factory.mktemp("any-message"))
    try:
        await cluster.start_broker()
        consumer = await cluster.start_consumer(
            "consumer-1",
            FAIL_ON_PROPERTY=POISON,
            MAX_DELIVERY_ATTEMPTS="2",
            RETRY_DELAY_SECONDS="0.01",
            LOG_PAYLOADS="false",
        )
        await consumer.wait_for(lambda line: line.get("event") == "subscribed")
        producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="3600")
        await producer.wait_http("/readyz", lambda status, _: status == 200)
        yield World(cluster, consumer, producer, cluster.stream_env["STREAM_URL"])
    finally:
        await cluster.stop()


async def backlog(url: str, stream: str = "streamQuickstart") -> int:
    connector = Connector(ClientConfig(url=url, stream=stream))
    try:
        stats = await StreamAdmin(connector).stats()
    finally:
        await connector.close()
    return int(stats["subscriptions"][SUBSCRIPTION]["msgBacklog"])


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=messages)
async def test_any_message_is_acked_or_dead_lettered_and_the_consumer_lives(
    world: World, batch: list[tuple[bytes, str | None, dict[str, str], bool]]
) -> None:
    connector = Connector(ClientConfig(url=world.url))
    batch = [*batch, (b"always one", None, {POISON: ""}, True)]  # every example has poison in it
    async with Producer(connector) as producer:
        for payload, key, props, through_http in batch:
            world.poisoned += POISON in props
            world.sent += 1
            if through_http:
                body = {"payload": payload.decode("utf-8", errors="replace"), "properties": props, "key": key}
                status, answer = await world.producer.post_json("/messages", body)
                assert status == 201, answer
            else:
                await producer.send(payload, props, key=key)
    await connector.close()

    async def drained() -> bool:
        return await backlog(world.url) == 0

    deadline = asyncio.get_running_loop().time() + 30
    while not await drained():
        assert asyncio.get_running_loop().time() < deadline, "the backlog did not drain"
        await asyncio.sleep(0.05)
    consumer = world.consumer
    assert consumer.proc is not None and consumer.proc.returncode is None, consumer.stderr.decode()[-2000:]
    assert await until(lambda: len(consumer.events("dead_lettered")) == world.poisoned, 10), (
        len(consumer.events("dead_lettered")),
        world.poisoned,
    )
    assert consumer.rss_mb() < RSS_BOUND_MB


async def test_the_dead_letter_stream_holds_exactly_the_poisoned(world: World) -> None:
    """Runs after the property test in this module (pytest keeps file order)."""
    _, status = await world.consumer.get_json("/status")
    assert status["counters"]["dead_lettered"] == world.poisoned > 0
    assert status["counters"]["received"] >= world.sent
    dlq = f"streamQuickstart-{SUBSCRIPTION}-DLQ"
    connector = Connector(ClientConfig(url=world.url, stream=dlq))
    try:
        stats = await StreamAdmin(connector).stats()
    finally:
        await connector.close()
    assert stats["msgInCounter"] == world.poisoned  # each exactly once: no kill happened here
