"""Readers: non-durable, start at latest, earliest or after a message id."""

from __future__ import annotations

import aiohttp
import pytest

from tests.broker.conftest import Client, ack, nothing, publish, publish_many, recv, send_json, unb64


@pytest.mark.parametrize("role", ["consumer", "reader"])
async def test_a_new_subscription_and_a_reader_at_latest_see_only_new_messages(
    client: Client, role: str
) -> None:
    """A consumer's new subscription starts at the end (as on Pulsar), like a reader at latest."""
    producer = await client.producer()
    await publish(producer, "old")
    receiver = await (client.consumer() if role == "consumer" else client.reader())
    await publish(producer, "new")
    assert unb64((await recv(receiver))["payload"]) == "new"


async def test_reader_earliest_sees_retained_messages(client: Client) -> None:
    producer = await client.producer()
    await publish_many(producer, ["a", "b"])
    reader = await client.reader(messageId="earliest")
    assert [unb64((await recv(reader))["payload"]) for _ in range(2)] == ["a", "b"]


async def test_reader_from_a_message_id_starts_after_it(client: Client) -> None:
    producer = await client.producer()
    ids = await publish_many(producer, ["a", "b", "c"])
    reader = await client.reader(messageId=ids[0])
    assert [unb64((await recv(reader))["payload"]) for _ in range(2)] == ["b", "c"]


async def test_reader_with_a_bad_message_id_is_500(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.reader(messageId="bogus")
    assert refused.value.status == 500  # Pulsar's reader answers every failure with 500


async def test_reader_acks_free_permits(client: Client) -> None:
    producer = await client.producer()
    await publish_many(producer, ["1", "2", "3"])
    reader = await client.reader(messageId="earliest", receiverQueueSize=2)
    first = await recv(reader)
    await recv(reader)
    await nothing(reader)
    await ack(reader, first)
    assert unb64((await recv(reader))["payload"]) == "3"


async def test_reader_does_not_create_a_subscription(client: Client) -> None:
    await client.producer()
    reader = await client.reader()
    await send_json(reader, {"type": "isEndOfTopic"})
    assert await recv(reader) == {"endOfTopic": False}
    async with client.session.get(client.base + "/admin/v2/persistent/public/default/t/subscriptions") as r:
        assert await r.json() == []
