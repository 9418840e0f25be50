"""Handshake refusals: a plain HTTP status on the upgrade, no 101."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import websocket
from streampair.consumer import Consumer
from streampair.errors import InvalidRequest, SubscriptionBusy

from tests.conformance.conftest import Target, unique


def _raw_status(url: str) -> int:
    """The status websocket-client (another client than ours) sees for the upgrade of `url`."""
    try:
        ws = websocket.create_connection(url, timeout=10)
    except websocket.WebSocketBadStatusException as error:
        return int(error.status_code)
    ws.close()
    return 101


async def test_second_consumer_on_an_exclusive_subscription_is_refused_with_409(target: Target) -> None:
    topic, sub = unique("excl"), unique("sub")
    first = await target.consumer(topic, sub, subscriptionType="Exclusive")

    connector = target.connector(topic)
    second = Consumer(connector, sub, "Exclusive")
    try:
        with pytest.raises(SubscriptionBusy) as refused:
            await second.connect()
        assert refused.value.status == 409
        assert not refused.value.retryable
    finally:
        await second.close()
        await connector.close()

    assert await asyncio.to_thread(_raw_status, target.ws_url("consumer", topic, sub)) == 409
    with pytest.raises(aiohttp.WSServerHandshakeError) as raw:
        await target.consumer(topic, sub)  # no subscriptionType: Exclusive is the default
    assert raw.value.status == 409

    # Once the holder leaves, the subscription is free again. The release is asynchronous
    # (the reference warns of a brief 409), so retry a few times; locally it takes the first.
    await first.close()
    for attempt in range(20):
        try:
            third = await target.consumer(topic, sub, subscriptionType="Exclusive")
        except aiohttp.WSServerHandshakeError as error:
            assert error.status == 409 and attempt < 19
            await asyncio.sleep(0.1)
            continue
        await third.close()
        break


@pytest.mark.parametrize("bad", ["Bogus", "shared", "exclusive"])
async def test_unknown_subscription_type_is_refused_with_400(target: Target, bad: str) -> None:
    topic, sub = unique("badtype"), unique("sub")
    connector = target.connector(topic)
    consumer = Consumer(connector, sub, bad)  # type: ignore[arg-type]
    try:
        with pytest.raises(InvalidRequest) as refused:
            await consumer.connect()
        assert refused.value.status == 400
    finally:
        await consumer.close()
        await connector.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as raw:
        await target.consumer(topic, sub, subscriptionType=bad)
    assert raw.value.status == 400
    assert (
        await asyncio.to_thread(
            _raw_status, target.ws_url("consumer", topic, sub) + f"?subscriptionType={bad}"
        )
        == 400
    )


@pytest.mark.ws_only("a WebSocket path with an empty subscription segment")
async def test_empty_subscription_name_is_refused_with_400(target: Target) -> None:
    topic = unique("emptysub")
    with pytest.raises(aiohttp.WSServerHandshakeError) as raw:
        await target.session.ws_connect(target.ws_url("consumer", topic) + "/")
    assert raw.value.status == 400
