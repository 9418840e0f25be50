"""BROKER_AUTH_TOKEN: every endpoint but health and metrics needs it; secrets never leak."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker

from tests.broker.conftest import publish, ws_url

TOKEN = "s3cret-token-value"
PRODUCER = "/ws/v2/producer/persistent/public/default/t"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[str]:
    async with running_broker(tmp_path, token=TOKEN) as base:
        yield base


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({"Authorization": "apikey wrong"}, {}),
        ({}, {"token": "wrong"}),
        ({"Authorization": TOKEN}, {}),
    ],
)
async def test_websocket_without_the_token_is_401(
    secured: str, session: aiohttp.ClientSession, headers: dict[str, str], params: dict[str, str]
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(ws_url(secured, PRODUCER), headers=headers, params=params)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"Authorization": f"bearer {TOKEN}"}, {}),
        ({"Authorization": f"apikey {TOKEN}"}, {}),
        ({}, {"token": TOKEN}),
    ],
)
async def test_websocket_with_the_token_is_accepted(
    secured: str, session: aiohttp.ClientSession, headers: dict[str, str], params: dict[str, str]
) -> None:
    producer = await session.ws_connect(ws_url(secured, PRODUCER), headers=headers, params=params)
    await publish(producer, "authorised")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/v2/persistent/public/default"),
        ("PUT", "/admin/v2/persistent/public/default/t"),
        ("GET", "/_fabric/_system/_api/streams"),
        ("POST", "/apid/otp"),
    ],
)
async def test_rest_without_the_token_is_401(
    secured: str, session: aiohttp.ClientSession, method: str, path: str
) -> None:
    body = {"json": {}} if method == "PUT" else {}
    async with session.request(method, secured + path, **body) as r:
        assert r.status == 401
        assert TOKEN not in await r.text()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.request(method, secured + path, headers=headers, **body) as r:
        assert r.status in (200, 204)


async def test_health_and_metrics_need_no_token(secured: str, session: aiohttp.ClientSession) -> None:
    async with session.get(secured + "/admin/v2/brokers/health") as r:
        assert r.status == 200
    async with session.get(secured + "/metrics") as r:
        assert r.status == 200
        assert TOKEN not in await r.text()


async def test_otp_needs_the_token_and_then_replaces_it(secured: str, session: aiohttp.ClientSession) -> None:
    async with session.post(secured + "/apid/otp", headers={"Authorization": f"apikey {TOKEN}"}) as r:
        otp = (await r.json())["otp"]
    producer = await session.ws_connect(ws_url(secured, "/_ws" + PRODUCER), params={"otp": otp})
    await publish(producer, "via otp")


async def test_without_a_token_any_api_key_is_accepted(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with running_broker(tmp_path) as base:
        producer = await session.ws_connect(
            ws_url(base, PRODUCER), headers={"Authorization": "apikey whatever.key.value"}
        )
        await publish(producer, "open")
