"""The client against a scripted WebSocket server: handshake refusals, pipelining, errors, reconnects."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from prometheus_client import REGISTRY
from streampair.config import ClientConfig
from streampair.connection import Connector
from streampair.consumer import Consumer, Reader
from streampair.errors import (
    BrokerUnavailable,
    SendError,
    SendTimeout,
    StreamNotFound,
    SubscriptionBusy,
    Unauthorized,
)
from streampair.producer import Producer

from harness import serve_app

TOPIC = "/ws/v2/{kind}/persistent/public/default/streamQuickstart"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def settings(base: str, **kw: Any) -> ClientConfig:
    return ClientConfig(
        url=base.replace("http://", "ws://"), heartbeat_seconds=2, reconnect_max_seconds=0.2, **kw
    )


@asynccontextmanager
async def fake_broker(kind: str, handler: Handler) -> AsyncIterator[Connector]:
    """A broker that answers `kind`'s path (a consumer's with any subscription) with `handler`,
    and a connector to it, closed on the way out."""
    app = web.Application()
    app.router.add_get(TOPIC.format(kind=kind) + ("/{sub}" if kind == "consumer" else ""), handler)
    async with serve_app(app) as base:
        connector = Connector(settings(base))
        try:
            yield connector
        finally:
            await connector.close()


async def held_open(ws: web.WebSocketResponse) -> web.WebSocketResponse:
    """Read and ignore frames until the client goes: the end of a handler that answers no more."""
    async for _ in ws:
        pass
    return ws


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_409_on_consumer_handshake_raises_subscription_busy() -> None:
    async def refuse(_: web.Request) -> web.Response:
        return web.Response(
            status=409, text="Failed to create consumer: Exclusive consumer is already connected"
        )

    before = sample("streampair_connection_attempts_total", {"result": "busy"})
    async with fake_broker("consumer", refuse) as connector:
        consumer = Consumer(connector, "consumer-subscription")
        with pytest.raises(SubscriptionBusy) as info:
            await consumer.connect_with_retry()  # a refusal is never retried
    assert info.value.status == 409
    assert "HTTP 409" in str(info.value)  # aiohttp does not keep a refused upgrade's body
    assert sample("streampair_connection_attempts_total", {"result": "busy"}) == before + 1


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (404, StreamNotFound)])
async def test_other_refusals_are_typed(status: int, error: type[Exception]) -> None:
    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=status)

    async with fake_broker("consumer", refuse) as connector:
        with pytest.raises(error):
            await Consumer(connector, "s").connect()


async def test_pipelined_sends_resolve_to_their_own_ids_and_a_send_error_fails_only_its_message() -> None:
    seen_in_flight: list[int] = []

    async def producer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        batch: list[dict[str, Any]] = []
        async for msg in ws:
            batch.append(json.loads(msg.data))
            if len(batch) == 10:  # answer only once ten are in flight, in reverse order
                seen_in_flight.append(len(batch))
                for frame in reversed(batch):
                    text = base64.b64decode(frame["payload"]).decode()
                    if text == "poison":
                        answer = {"result": "send-error:8", "errorMsg": "boom", "context": frame["context"]}
                    else:
                        answer = {"result": "ok", "messageId": b64("id-" + text), "context": frame["context"]}
                    await ws.send_str(json.dumps(answer))
                batch.clear()
        return ws

    async with fake_broker("producer", producer) as connector, Producer(connector, max_pending=100) as p:
        await p.wait_connected()
        texts = [f"m{i}" for i in range(9)] + ["poison"] + [f"n{i}" for i in range(10)]
        results = await asyncio.gather(*(p.send(t) for t in texts), return_exceptions=True)
    assert seen_in_flight == [10, 10]  # truly pipelined: ten unanswered at once
    for text, result in zip(texts, results, strict=True):
        if text == "poison":
            assert isinstance(result, SendError) and result.code == "8"
        else:
            assert result == b64("id-" + text)


async def test_a_dropped_producer_connection_is_reestablished_and_unanswered_sends_are_resent() -> None:
    connections = 0
    received: list[str] = []

    async def producer(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            received.append(base64.b64decode(frame["payload"]).decode())
            if connections == 1:
                await ws.close()  # drop the first connection without answering
                break
            await ws.send_str(json.dumps({"result": "ok", "messageId": "x", "context": frame["context"]}))
        return ws

    async with fake_broker("producer", producer) as connector, Producer(connector) as p:
        assert await asyncio.wait_for(p.send("first"), 10) == "x"
    assert connections == 2
    assert received == ["first", "first"]


async def test_producer_send_timeout_counts_an_error() -> None:
    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        return await held_open(ws)

    before = sample("streampair_publish_errors_total", {"reason": "timeout"})
    async with fake_broker("producer", silent) as connector, Producer(connector, send_timeout=0.3) as p:
        with pytest.raises(SendTimeout):
            await p.send("never answered")
    assert sample("streampair_publish_errors_total", {"reason": "timeout"}) == before + 1


async def test_consumer_receives_acks_survives_malformed_frames_and_reconnects() -> None:
    acks: list[str] = []
    connections = 0
    params: dict[str, str] = {}

    async def consumer(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        params.update(request.query)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if connections == 1:
            await ws.send_str("this is not json")
            await ws.send_str(json.dumps({"payload": b64("no id")}))
            await ws.send_str(json.dumps({"messageId": "bad", "payload": "***not base64***"}))
            await ws.send_str(
                json.dumps(
                    {
                        "messageId": "CAEQAQ==",
                        "payload": b64("hello"),
                        "properties": {"seq": "1"},
                        "publishTime": "2026-11-28T10:00:00.000Z",
                        "redeliveryCount": 0,
                        "key": "k1",
                    }
                )
            )
            msg = await ws.receive()
            acks.append(json.loads(msg.data)["messageId"])
            await ws.close()  # the broker goes away
            return ws
        await ws.send_str(
            json.dumps({"messageId": "CAEQAg==", "payload": b64("again"), "redeliveryCount": 1})
        )
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                acks.append(json.loads(msg.data)["messageId"])
                break
        return ws

    bad_before = sample("streampair_malformed_frames_total", {"kind": "not_json"})
    async with fake_broker("consumer", consumer) as connector:
        c = Consumer(connector, "sub", "Shared", consumer_name="c1", receiver_queue_size=5000)
        got = []
        async for m in c:
            got.append(m)
            assert await c.ack(m)
            if len(got) == 2:
                break
        await c.close()
    assert [m.text() for m in got] == ["hello", "again"]
    assert got[0].properties == {"seq": "1"} and got[0].key == "k1" and got[0].publish_time is not None
    assert got[1].redelivery_count == 1
    assert acks == ["CAEQAQ==", "CAEQAg=="]
    assert connections == 2
    assert params["subscriptionType"] == "Shared" and params["consumerName"] == "c1"
    assert params["receiverQueueSize"] == "1000"  # capped like Pulsar
    assert sample("streampair_malformed_frames_total", {"kind": "not_json"}) == bad_before + 1


async def test_an_ack_for_a_message_of_a_dead_connection_is_not_sent() -> None:
    async def consumer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"messageId": "m1", "payload": b64("x")}))
        return await held_open(ws)

    async with fake_broker("consumer", consumer) as connector:
        c = Consumer(connector, "sub")
        m = await anext(aiter(c))
        await c.connect()  # a new connection: the old delivery can no longer be acked
        assert await c.ack(m) is False
        await c.close()


async def test_reader_sends_message_id_and_acks_for_permits() -> None:
    acks: list[str] = []
    query: dict[str, str] = {}

    async def reader(request: web.Request) -> web.WebSocketResponse:
        query.update(request.query)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for i in range(3):
            await ws.send_str(json.dumps({"messageId": f"id{i}", "payload": b64(f"r{i}")}))
        async for msg in ws:
            acks.append(json.loads(msg.data)["messageId"])
            if len(acks) == 2:
                break
        return ws

    async with fake_broker("reader", reader) as connector:
        r = Reader(connector, "earliest")
        texts = []
        async for m in r:
            texts.append(m.text())
            if len(texts) == 3:
                break
        await r.close()
    assert query["messageId"] == "earliest"
    assert texts == ["r0", "r1", "r2"]
    assert acks == ["id0", "id1"]


async def test_unreachable_broker_is_retryable() -> None:
    connector = Connector(ClientConfig(url="ws://127.0.0.1:9", connect_timeout_seconds=2))
    with pytest.raises(BrokerUnavailable) as info:
        await connector.open("producer")
    assert info.value.retryable
    await connector.close()


async def test_a_late_answer_is_not_counted_as_malformed() -> None:
    timed_out = asyncio.Event()

    async def slow(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = json.loads((await ws.receive()).data)
        await timed_out.wait()
        await ws.send_str(json.dumps({"result": "ok", "messageId": "late", "context": first["context"]}))
        second = json.loads((await ws.receive()).data)
        await ws.send_str(json.dumps({"result": "ok", "messageId": "on-time", "context": second["context"]}))
        return await held_open(ws)

    before = sample("streampair_malformed_frames_total", {"kind": "unknown_context"})
    async with fake_broker("producer", slow) as connector, Producer(connector, send_timeout=0.3) as p:
        with pytest.raises(SendTimeout):
            await p.send("first")
        timed_out.set()
        assert await p.send("second") == "on-time"  # answered after the late one was read
    assert sample("streampair_malformed_frames_total", {"kind": "unknown_context"}) == before


async def test_interrupt_wakes_a_consumer_waiting_to_reconnect() -> None:
    from streampair.backoff import Backoff
    from streampair.errors import ConnectionLost

    waiting = asyncio.Event()

    class LongBackoff(Backoff):
        """25 s between attempts: only the interrupt can end the wait early."""

        def next_delay(self) -> float:
            waiting.set()
            return 25.0

    async def unavailable(_: web.Request) -> web.Response:
        return web.Response(status=503)

    async with fake_broker("consumer", unavailable) as connector:
        consumer = Consumer(connector, "sub", backoff=LongBackoff())
        task = asyncio.create_task(consumer.connect_with_retry())
        await waiting.wait()
        consumer.interrupt()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(task, 5)
        await consumer.close()


async def test_a_property_that_is_not_a_string_is_refused_before_sending() -> None:
    """Pulsar closes the producer's whole connection (1011) on a null property value."""
    connector = Connector(settings("http://127.0.0.1:9"))
    producer = Producer(connector)
    try:
        with pytest.raises(TypeError):
            await producer.send_async(b"x", {"n": None})  # type: ignore[dict-item]
        assert producer.in_flight == 0
    finally:
        await producer.close()
        await connector.close()
