"""Macrometa GDN dialect: streams REST, OTP, `/_ws` WebSockets, `//` paths, one topic for both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker

from tests.broker.conftest import Client, b64, publish, recv, send_json, unb64, ws_url

STREAMS = "/_fabric/_system/_api/streams"
GDN_WS = "/_ws/ws/v2/{role}/persistent/_mm/c8global._system/c8globals.x"


async def test_create_list_and_409(client: Client) -> None:
    async with client.session.post(client.base + STREAMS + "/x", params={"global": "true"}) as r:
        body = await r.json()
        assert r.status == 200
        assert body["error"] is False and body["result"]["stream-id"] == "c8globals.x"
    async with client.session.post(client.base + STREAMS + "/x", params={"global": "true"}) as r:
        assert r.status == 409 and (await r.json())["error"] is True
    async with client.session.get(client.base + STREAMS, params={"global": "true"}) as r:
        body = await r.json()
    assert [item["topic"] for item in body["result"]] == ["c8globals.x"]
    async with client.session.get(client.base + STREAMS, params={"global": "false"}) as r:
        assert (await r.json())["result"] == []


async def test_macrometa_stream_is_the_pulsar_topic(client: Client) -> None:
    async with client.session.post(client.base + STREAMS + "/x", params={"global": "true"}):
        pass
    consumer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="consumer") + "/sub"))
    producer = await client.session.ws_connect(
        ws_url(client.base, "/ws/v2/producer/persistent/_mm/c8global._system/c8globals.x")
    )
    await publish(producer, "both dialects")
    assert unb64((await recv(consumer))["payload"]) == "both dialects"
    async with client.session.get(client.base + "/admin/v2/persistent/_mm/c8global._system") as r:
        assert await r.json() == ["persistent://_mm/c8global._system/c8globals.x"]


async def test_double_slash_paths_are_tolerated(client: Client) -> None:
    url = ws_url(client.base, "//" + GDN_WS.format(role="producer").lstrip("/"))
    producer = await client.session.ws_connect(url)
    await publish(producer, "via //")
    async with client.session.get(client.base + "//_fabric/_system//_api/streams") as r:
        assert r.status == 200


async def test_stats_backlog_subscriptions_and_delete_subscription(client: Client) -> None:
    consumer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="consumer") + "/sub"))
    producer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="producer")))
    await publish(producer, "m")
    await recv(consumer)
    async with client.session.get(client.base + STREAMS + "/c8globals.x/stats") as r:
        assert (await r.json())["result"]["subscriptions"]["sub"]["msgBacklog"] == 1
    async with client.session.get(client.base + STREAMS + "/c8globals.x/backlog") as r:
        assert (await r.json())["result"]["subscriptions"] == {"sub": 1}
    async with client.session.get(client.base + STREAMS + "/c8globals.x/subscriptions") as r:
        assert (await r.json())["result"] == ["sub"]
    async with client.session.delete(client.base + STREAMS + "/c8globals.x/subscriptions/sub") as r:
        assert r.status == 412
    await consumer.close()
    async with client.session.delete(client.base + STREAMS + "/c8globals.x/subscriptions/sub") as r:
        assert r.status == 200
    async with client.session.delete(client.base + STREAMS + "/c8globals.x/subscriptions/sub") as r:
        assert r.status == 404


async def test_clear_backlog(client: Client) -> None:
    consumer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="consumer") + "/sub"))
    await consumer.close()
    producer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="producer")))
    await publish(producer, "1")
    await publish(producer, "2")
    async with client.session.post(client.base + STREAMS + "/clearbacklog/sub") as r:
        assert r.status == 200
    async with client.session.get(client.base + STREAMS + "/c8globals.x/backlog") as r:
        assert (await r.json())["result"]["subscriptions"] == {"sub": 0}
    await publish(producer, "3")
    async with client.session.post(client.base + STREAMS + "/clearbacklog") as r:
        assert r.status == 200
    async with client.session.get(client.base + STREAMS + "/c8globals.x/backlog") as r:
        assert (await r.json())["result"]["subscriptions"] == {"sub": 0}


async def test_delete_stream(client: Client) -> None:
    async with client.session.post(client.base + STREAMS + "/x"):
        pass
    async with client.session.delete(client.base + STREAMS + "/c8globals.x") as r:
        assert r.status == 200
    async with client.session.delete(client.base + STREAMS + "/c8globals.x") as r:
        assert r.status == 404


async def test_local_stream_naming(client: Client) -> None:
    async with client.session.post(client.base + STREAMS + "/y", params={"global": "false"}) as r:
        assert (await r.json())["result"]["stream-id"] == "c8locals.y"
    async with client.session.get(client.base + "/admin/v2/persistent/_mm/c8local._system") as r:
        assert await r.json() == ["persistent://_mm/c8local._system/c8locals.y"]


async def test_tenant_prefix_and_api_key_tenant(client: Client) -> None:
    headers = {"Authorization": "apikey acme.reader.s3cr3t"}
    async with client.session.post(client.base + STREAMS + "/z", headers=headers):
        pass
    async with client.session.get(client.base + "/_tenant/acme" + STREAMS) as r:
        assert [item["topic"] for item in (await r.json())["result"]] == ["c8globals.z"]


async def test_otp_is_single_use(client: Client) -> None:
    async with client.session.post(client.base + "/apid/otp") as r:
        otp = (await r.json())["otp"]
    url = ws_url(client.base, GDN_WS.format(role="producer"))
    producer = await client.session.ws_connect(url, params={"otp": otp})
    await publish(producer, "with otp")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(url, params={"otp": otp})
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(url, params={"otp": "made-up"})
    assert refused.value.status == 401


async def test_expired_otp_is_401(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with running_broker(tmp_path, broker_otp_ttl_seconds=0.05) as base:
        async with session.post(base + "/apid/otp") as r:
            otp = (await r.json())["otp"]
        await asyncio.sleep(0.1)  # the lifetime itself is what is tested: time has to pass
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(base, GDN_WS.format(role="producer")), params={"otp": otp})
        assert refused.value.status == 401


async def test_producer_frames_are_the_same_under_ws_prefix(client: Client) -> None:
    producer = await client.session.ws_connect(ws_url(client.base, GDN_WS.format(role="producer")))
    await producer.send_str("nope")
    assert (await recv(producer))["result"] == "send-error:3"
    await send_json(producer, {"payload": b64("ok"), "context": "1"})
    assert (await recv(producer))["result"] == "ok"
