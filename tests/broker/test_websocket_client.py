"""The frames and the 409 as Python's websocket-client (what pyC8 uses) sees them."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import websocket

from tests.broker.conftest import ws_url

TOPIC = "/_ws/ws/v2/{role}/persistent/_mm/c8global._system/c8globals.wsc"


def exchange(base: str) -> tuple[dict[str, object], dict[str, object], int]:
    """Blocking client code, as pyC8 writes it; returns (producer answer, delivery, 409 status)."""
    consumer = websocket.create_connection(ws_url(base, TOPIC.format(role="consumer") + "/sub"), timeout=5)
    producer = websocket.create_connection(ws_url(base, TOPIC.format(role="producer")), timeout=5)
    try:
        producer.send(json.dumps({"payload": base64.b64encode(b"hi").decode(), "context": "c1"}))
        answer = json.loads(producer.recv())
        delivery = json.loads(consumer.recv())
        consumer.send(json.dumps({"messageId": delivery["messageId"]}))
        status = 0
        try:
            websocket.create_connection(ws_url(base, TOPIC.format(role="consumer") + "/sub"), timeout=5)
        except websocket.WebSocketBadStatusException as error:
            status = error.status_code
        return answer, delivery, status
    finally:
        producer.close()
        consumer.close()


async def test_websocket_client_sees_pulsar_frames_and_409(base_url: str) -> None:
    answer, delivery, status = await asyncio.to_thread(exchange, base_url)
    assert answer["result"] == "ok" and answer["context"] == "c1"
    assert delivery["messageId"] == answer["messageId"]
    assert delivery["payload"] == base64.b64encode(b"hi").decode()
    assert status == 409


def bad_handshake(base: str, path: str) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(base, path), timeout=5)
    return int(refused.value.status_code)


async def test_websocket_client_sees_400_for_a_bad_subscription_type(base_url: str) -> None:
    path = TOPIC.format(role="consumer") + "/sub?subscriptionType=Nope"
    assert await asyncio.to_thread(bad_handshake, base_url, path) == 400
