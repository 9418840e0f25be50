"""What was answered `ok` survives a restart, kill -9 included; cursors and acks too."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker

from tests.broker.conftest import (
    BrokerProcess,
    Client,
    ack,
    nothing,
    publish_many,
    recv,
    send_json,
    unb64,
    ws_url,
)

CONSUMER = "/ws/v2/consumer/persistent/public/default/t/s"
PRODUCER = "/ws/v2/producer/persistent/public/default/t"


@pytest.fixture
async def broker(broker_process: Callable[..., BrokerProcess]) -> BrokerProcess:
    """A broker process, started (the tests stop and start it again)."""
    started = broker_process()
    await started.start()
    return started


async def test_kill_9_loses_no_acknowledged_publish_and_redelivers_unacked(
    broker: BrokerProcess, session: aiohttp.ClientSession
) -> None:
    consumer = await session.ws_connect(ws_url(broker.base, CONSUMER))
    producer = await session.ws_connect(ws_url(broker.base, PRODUCER))
    texts = [f"m{i}" for i in range(500)]
    await publish_many(producer, texts)
    acked: list[str] = []
    for _ in range(200):  # ack the first 100, leave the next 100 delivered but unacked
        frame = await recv(consumer)
        if len(acked) < 100:
            await ack(consumer, frame)
            acked.append(unb64(frame["payload"]))
    # Acks are not answered; an isEndOfTopic round trip proves the broker has read them.
    await send_json(consumer, {"type": "isEndOfTopic"})
    while "endOfTopic" not in await recv(consumer):
        pass
    broker.kill9()
    await consumer.close()
    await producer.close()

    await broker.start()
    again = await session.ws_connect(ws_url(broker.base, CONSUMER))
    got: list[str] = []
    while not got or got[-1] != texts[-1]:
        frame = await recv(again)
        got.append(unb64(frame["payload"]))
        await ack(again, frame)
    assert acked == texts[:100]
    # Nothing acknowledged `ok` is missing, in order. Acks of the last commit before the kill
    # may be replayed (at-least-once): only acked messages may come again, at the start.
    replayed = got[: len(got) - 400]
    assert got[len(replayed) :] == texts[100:]
    assert replayed == acked[len(acked) - len(replayed) :]
    await nothing(again)


async def test_sigterm_commits_and_stops_with_1001(
    broker: BrokerProcess, session: aiohttp.ClientSession
) -> None:
    consumer = await session.ws_connect(ws_url(broker.base, CONSUMER))
    assert broker.terminate() == 0
    msg = await consumer.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert consumer.close_code == 1001


async def test_cursor_with_individual_acks_survives_restart(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with running_broker(tmp_path) as base:
            client = Client(base, session)
            consumer = await client.consumer()
            producer = await client.producer()
            await publish_many(producer, ["1", "2", "3", "4"])
            frames = [await recv(consumer) for _ in range(4)]
            await ack(consumer, frames[1])  # out of order: 2 and 4 acked, 1 and 3 not
            await ack(consumer, frames[3])
            await send_json(consumer, {"type": "isEndOfTopic"})
            await recv(consumer)
            await consumer.close()
        async with running_broker(tmp_path) as base:
            client = Client(base, session)
            consumer = await client.consumer()
            got = [unb64((await recv(consumer))["payload"]) for _ in range(2)]
            assert got == ["1", "3"]
            await nothing(consumer)


async def test_messages_acked_by_every_subscription_are_removed(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session, running_broker(tmp_path) as base:
        client = Client(base, session)
        one = await client.consumer(sub="one")
        two = await client.consumer(sub="two")
        producer = await client.producer()
        await publish_many(producer, ["a", "b"])
        for consumer in (one, two):
            for _ in range(2):
                await ack(consumer, await recv(consumer))
            await send_json(consumer, {"type": "isEndOfTopic"})
            await recv(consumer)
    with sqlite3.connect(tmp_path / "broker.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM acks").fetchone() == (0,)


async def test_topics_without_subscriptions_keep_the_retention_window(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with running_broker(tmp_path, broker_retention_messages=3) as base:
            producer = await Client(base, session).producer()
            await publish_many(producer, [str(i) for i in range(6)])
            await publish_many(producer, ["6"])  # the trim of the first batch is written with this one
        async with running_broker(tmp_path, broker_retention_messages=3) as base:
            reader = await Client(base, session).reader(messageId="earliest")
            got = [unb64((await recv(reader))["payload"]) for _ in range(3)]
            assert got == ["4", "5", "6"]


async def test_names_deleted_and_reused_survive_a_restart(tmp_path: Path) -> None:
    admin = "/admin/v2/persistent/public/default/t"
    async with aiohttp.ClientSession() as session:
        async with running_broker(tmp_path) as base:
            client = Client(base, session)
            consumer = await client.consumer()
            await send_json(consumer, {"type": "unsubscribe"})
            await send_json(consumer, {"type": "isEndOfTopic"})
            await consumer.receive(timeout=5)  # answered after the unsubscribe was handled
            again = await client.consumer()  # same name, new subscription, likely the same commit
            async with session.delete(base + admin, params={"force": "true"}) as r:
                assert r.status == 204
            await again.receive(timeout=5)
            async with session.put(base + admin, json={}) as r:  # same topic name, new topic
                assert r.status == 204
            consumer = await client.consumer()
            producer = await client.producer()
            await publish_many(producer, ["kept"])
            await consumer.close()
        async with running_broker(tmp_path) as base:
            consumer = await Client(base, session).consumer()
            assert unb64((await recv(consumer))["payload"]) == "kept"


async def test_tenants_namespaces_and_terminations_survive_a_restart(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with running_broker(tmp_path) as base:
            async with session.put(base + "/admin/v2/tenants/acme", json={"allowedClusters": ["x"]}) as r:
                assert r.status == 204
            async with session.put(base + "/admin/v2/namespaces/acme/prod", json={}) as r:
                assert r.status == 204
            client = Client(base, session)
            producer = await client.producer()
            await publish_many(producer, ["last"])
            async with session.post(base + "/admin/v2/persistent/public/default/t/terminate") as r:
                assert r.status == 200
        async with running_broker(tmp_path) as base:
            ws = await session.ws_connect(ws_url(base, "/ws/v2/producer/persistent/acme/prod/t"))
            await ws.close()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await Client(base, session).producer()
            assert refused.value.status == 503  # still terminated
