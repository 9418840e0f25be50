"""The Pulsar admin REST subset."""

from __future__ import annotations

from tests.broker.conftest import Client, publish, recv

ADMIN = "/admin/v2/persistent/public/default"
LABELS = '{subscription="s",topic="persistent://public/default/t"}'


async def test_health_is_ok(client: Client) -> None:
    async with client.session.get(client.base + "/admin/v2/brokers/health") as r:
        assert r.status == 200 and await r.text() == "ok"


async def test_create_list_and_conflict(client: Client) -> None:
    async with client.session.put(client.base + ADMIN + "/made", json={}) as r:
        assert r.status == 204
    async with client.session.put(client.base + ADMIN + "/made", json={}) as r:
        assert r.status == 409
        assert "reason" in await r.json()
    async with client.session.get(client.base + ADMIN) as r:
        assert await r.json() == ["persistent://public/default/made"]


async def test_stats_shape(client: Client) -> None:
    consumer = await client.consumer(consumerName="c1")
    producer = await client.producer(producerName="p1")
    await publish(producer, "x")
    await recv(consumer)
    async with client.session.get(client.base + ADMIN + "/t/stats") as r:
        stats = await r.json()
    sub = stats["subscriptions"]["s"]
    assert sub["type"] == "Exclusive"
    assert sub["msgBacklog"] == 1
    assert [c["consumerName"] for c in sub["consumers"]] == ["c1"]
    assert [p["producerName"] for p in stats["publishers"]] == ["p1"]


async def test_unknown_topic_is_404(client: Client) -> None:
    async with client.session.get(client.base + ADMIN + "/nope/stats") as r:
        assert r.status == 404


async def test_delete_topic_in_use_needs_force(client: Client) -> None:
    consumer = await client.consumer()
    async with client.session.delete(client.base + ADMIN + "/t") as r:
        assert r.status == 412
    async with client.session.delete(client.base + ADMIN + "/t", params={"force": "true"}) as r:
        assert r.status == 204
    msg = await consumer.receive(timeout=5)
    assert consumer.closed or msg.type.name.startswith("CLOS")
    async with client.session.get(client.base + ADMIN) as r:
        assert await r.json() == []


async def test_delete_subscription(client: Client) -> None:
    consumer = await client.consumer()
    async with client.session.delete(client.base + ADMIN + "/t/subscription/s") as r:
        assert r.status == 412
    await consumer.close()
    async with client.session.delete(client.base + ADMIN + "/t/subscription/s") as r:
        assert r.status == 204
    async with client.session.get(client.base + ADMIN + "/t/subscriptions") as r:
        assert await r.json() == []


async def test_metrics_exposes_the_broker_series(client: Client) -> None:
    consumer = await client.consumer()
    producer = await client.producer()
    await publish(producer, "x")
    await recv(consumer)
    async with client.session.get(client.base + "/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    for name in (
        "streampair_broker_topics 1.0",
        "streampair_broker_messages_published_total 1.0",
        "streampair_broker_messages_dispatched_total 1.0",
        "streampair_broker_subscription_backlog_messages" + LABELS + " 1.0",
        "streampair_broker_subscription_consumers" + LABELS + " 1.0",
        'streampair_broker_connections{role="consumer"} 1.0',
    ):
        assert name in text, name
