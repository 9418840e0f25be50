"""Admin REST: create a topic (PUT: 204, then 409 for an existing non-partitioned topic) and
read its stats (`subscriptions.{sub}.{msgBacklog,type,consumers}`), raw and through StreamAdmin."""

from __future__ import annotations

import pytest
from streampair.admin import StreamAdmin

from tests.conformance.conftest import Target, eventually, publish, recv_n, unique


@pytest.mark.ws_only("admin REST alone: the same requests on both Pulsar targets")
async def test_put_creates_a_topic_then_answers_409(target: Target) -> None:
    topic = unique("adm")
    url = target.admin_url(topic)
    async with target.session.get(url + "/stats") as response:
        assert response.status == 404
    async with target.session.put(url, json={}) as response:
        assert response.status == 204, await response.text()
    async with target.session.put(url, json={}) as response:
        assert response.status == 409
        assert "already exists" in (await response.json(content_type=None))["reason"]
    stats = await target.stats(topic)
    assert stats["subscriptions"] == {} and stats["publishers"] == []


@pytest.mark.ws_only("admin REST alone: the same requests on both Pulsar targets")
async def test_put_without_a_json_content_type_is_refused_with_415(target: Target) -> None:
    async with target.session.put(target.admin_url(unique("adm415"))) as response:
        assert response.status == 415


async def test_stream_admin_ensure_stream_creates_once(target: Target) -> None:
    topic = unique("ens")
    connector = target.connector(topic)
    try:
        admin = StreamAdmin(connector)
        assert await admin.ensure_stream() is True
        assert await admin.ensure_stream() is False
        assert (await admin.stats())["subscriptions"] == {}
    finally:
        await connector.close()


async def test_stats_report_backlog_type_and_consumers(target: Target) -> None:
    topic, sub = unique("st"), unique("sub")
    consumers = [
        await target.consumer(topic, sub, subscriptionType="Shared", consumerName=name) for name in ("a", "b")
    ]
    producer = await target.producer(topic)
    await publish(producer, ["b0", "b1", "b2"])
    connector = target.connector(topic)
    try:
        admin = StreamAdmin(connector)
        stats = await admin.stats()
        entry = stats["subscriptions"][sub]
        assert entry["type"] == "Shared"
        assert entry["msgBacklog"] == 3  # delivered but not acknowledged still counts
        assert sorted(c["consumerName"] for c in entry["consumers"]) == ["a", "b"]
        assert len(stats["publishers"]) == 1
    finally:
        await connector.close()

    for ws in consumers:
        await ws.close()
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["consumers"] == [])
    assert (await target.stats(topic))["subscriptions"][sub]["msgBacklog"] == 3  # durable: kept

    again = await target.consumer(topic, sub, subscriptionType="Shared")
    frames = await recv_n(again, 3)
    for frame in frames:
        await again.send_json({"messageId": frame["messageId"]})
    await eventually(lambda: target.stats(topic), lambda s: s["subscriptions"][sub]["msgBacklog"] == 0)
    await again.close()
    await producer.close()


@pytest.mark.ws_only("admin REST alone: the same requests on both Pulsar targets")
async def test_failover_stats_name_the_active_consumer(target: Target) -> None:
    topic, sub = unique("act"), unique("sub")
    consumers = [
        await target.consumer(topic, sub, subscriptionType="Failover", consumerName=name)
        for name in ("a", "b")
    ]
    stats = await target.stats(topic)
    assert stats["subscriptions"][sub]["activeConsumerName"] in ("a", "b")
    for ws in consumers:
        await ws.close()
