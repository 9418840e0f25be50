"""Publishing: answers correlated by `context`, and `send-error` for frames the broker cannot use.
Frame-level checks go over a raw aiohttp WebSocket; the library's Producer is checked too."""

from __future__ import annotations

import base64

import pytest
from streampair.producer import Producer

from tests.conformance.conftest import Target, b64, recv, send, unique


@pytest.mark.ws_only("WebSocket producer frames")
async def test_publish_answers_ok_with_a_message_id_and_echoes_the_context(target: Target) -> None:
    ws = await target.producer(unique("pub"))
    await send(ws, {"payload": b64("hello"), "context": "ctx-1", "properties": {"k": "v"}, "key": "key-a"})
    answer = await recv(ws)
    assert answer["result"] == "ok"
    assert answer["context"] == "ctx-1"
    assert isinstance(answer["messageId"], str) and answer["messageId"]
    base64.b64decode(answer["messageId"], validate=True)  # an opaque base64 string

    await send(ws, {"payload": b64("no context")})
    answer = await recv(ws)
    assert answer["result"] == "ok" and "context" not in answer

    await send(ws, {"payload": b64("again"), "context": "ctx-2"})
    second = await recv(ws)
    assert second["result"] == "ok" and second["context"] == "ctx-2"
    assert len({answer["messageId"], second["messageId"]}) == 2
    await ws.close()


@pytest.mark.ws_only("WebSocket producer frames")
async def test_pipelined_sends_are_answered_in_order_with_their_contexts(target: Target) -> None:
    ws = await target.producer(unique("pipe"))
    for i in range(20):
        await send(ws, {"payload": b64(f"m{i}"), "context": f"c{i}"})
    answers = [await recv(ws) for _ in range(20)]
    assert [a["context"] for a in answers] == [f"c{i}" for i in range(20)]
    assert all(a["result"] == "ok" for a in answers)
    assert len({a["messageId"] for a in answers}) == 20
    await ws.close()


@pytest.mark.ws_only("WebSocket producer frames")
async def test_non_json_frame_gets_send_error_3_without_context_and_the_connection_stays_usable(
    target: Target,
) -> None:
    ws = await target.producer(unique("badjson"))
    await ws.send_str("this is not json")
    answer = await recv(ws)
    assert answer["result"] == "send-error:3"
    assert "context" not in answer
    assert answer.get("errorMsg")

    await ws.send_str("[1, 2]")  # JSON, but not an object
    answer = await recv(ws)
    assert answer["result"] == "send-error:3" and "context" not in answer

    await send(ws, {"payload": b64("still fine"), "context": "after"})
    answer = await recv(ws)
    assert answer["result"] == "ok" and answer["context"] == "after"
    assert not ws.closed
    await ws.close()


@pytest.mark.ws_only("WebSocket producer frames")
async def test_bad_payload_gets_send_error_7_with_context(target: Target) -> None:
    ws = await target.producer(unique("badb64"))
    await send(ws, {"payload": "%%%not base64%%%", "context": "b64"})
    answer = await recv(ws)
    assert answer["result"] == "send-error:7"
    assert answer["context"] == "b64"
    assert answer.get("errorMsg")

    await send(ws, {"context": "np"})  # no payload at all
    answer = await recv(ws)
    assert answer["result"] == "send-error:7" and answer["context"] == "np"

    await send(ws, {"payload": b64("ok now"), "context": "good"})
    answer = await recv(ws)
    assert answer["result"] == "ok" and answer["context"] == "good"
    await ws.close()


async def test_library_producer_gets_distinct_message_ids(target: Target) -> None:
    connector = target.connector(unique("libpub"))
    try:
        async with Producer(connector) as producer:
            ids = [await producer.send(f"m{i}", {"i": str(i)}) for i in range(5)]
    finally:
        await connector.close()
    assert len(set(ids)) == 5 and all(ids)
