"""Producer frames and answers, bad input, handshake statuses."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker

from tests.broker.conftest import Client, b64, metric, publish, recv, send_json, ws_url


async def test_ok_answer_echoes_context_and_gives_an_opaque_id(client: Client) -> None:
    producer = await client.producer()
    answer = await publish(producer, "hello")
    assert answer["context"] == "hello"
    assert isinstance(answer["messageId"], str) and answer["messageId"]
    second = await publish(producer, "again")
    assert second["messageId"] != answer["messageId"]


async def test_answer_without_context_has_no_context(client: Client) -> None:
    producer = await client.producer()
    await send_json(producer, {"payload": b64("x")})
    answer = await recv(producer)
    assert answer["result"] == "ok" and "context" not in answer


async def test_non_json_frame_gets_send_error_3_and_connection_stays_open(client: Client) -> None:
    producer = await client.producer()
    await producer.send_str("this is not json")
    answer = await recv(producer)
    assert answer["result"] == "send-error:3"
    assert "context" not in answer and answer["errorMsg"]
    await publish(producer, "still works")


async def test_json_that_is_not_an_object_is_send_error_3(client: Client) -> None:
    producer = await client.producer()
    await producer.send_str("[1, 2]")
    assert (await recv(producer))["result"] == "send-error:3"


async def test_bad_base64_payload_is_send_error_7_with_context(client: Client) -> None:
    producer = await client.producer()
    await send_json(producer, {"payload": "%%% not base64", "context": "c1"})
    answer = await recv(producer)
    assert answer == {
        "result": "send-error:7",
        "errorMsg": "Invalid Base64 message-payload error=Illegal base64 character 25",
        "context": "c1",
        "errorCode": 0,
        "schemaVersion": 0,
    }
    await publish(producer, "fine")


async def test_missing_payload_is_send_error_7(client: Client) -> None:
    producer = await client.producer()
    await send_json(producer, {"context": "c2"})
    answer = await recv(producer)
    assert answer["result"] == "send-error:7" and answer["context"] == "c2"


async def test_bad_properties_are_send_error_3(client: Client) -> None:
    producer = await client.producer()
    await send_json(producer, {"payload": b64("x"), "properties": {"a": {"nested": 1}}, "context": "c"})
    assert (await recv(producer))["result"] == "send-error:3"


async def test_bad_frames_are_counted(client: Client) -> None:
    producer = await client.producer()
    await producer.send_str("nope")
    await recv(producer)
    await send_json(producer, {"payload": "!!", "context": "c"})
    await recv(producer)
    prefix = "streampair_broker_bad_frames_total"
    assert await metric(client.session, client.base, prefix + '{kind="json"}') == 1
    assert await metric(client.session, client.base, prefix + '{kind="payload"}') == 1


async def test_frame_over_the_limit_closes_with_1009(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with running_broker(tmp_path, broker_max_frame_bytes=2048) as base:
        producer = await session.ws_connect(ws_url(base, "/ws/v2/producer/persistent/public/default/t"))
        await send_json(producer, {"payload": b64("x" * 4096), "context": "big"})
        msg = await producer.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert producer.close_code == 1009


async def test_second_producer_with_the_same_name_is_409(client: Client) -> None:
    first = await client.producer(producerName="p1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.producer(producerName="p1")
    assert refused.value.status == 409
    await client.producer(producerName="p2")
    await first.close()


@pytest.mark.parametrize(
    "path",
    [
        "/ws/v2/publisher/persistent/public/default/t",
        "/ws/v3/producer/persistent/public/default/t",
        "/nothing/here",
    ],
)
async def test_unknown_paths_are_404(base_url: str, session: aiohttp.ClientSession, path: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(ws_url(base_url, path))
    assert refused.value.status == 404


async def test_bad_integer_parameter_is_400(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.producer(sendTimeoutMillis="soon")
    assert refused.value.status == 400
