"""The producer's start-up: ensure the stream exists, tolerate a publish-only credential."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from producer.app import ProducerService
from producer.settings import ProducerSettings
from streampair.errors import InvalidRequest
from streampair.runtime import ServiceStatus

from harness import serve_app

TOPIC = "/admin/v2/persistent/public/default/streamQuickstart"


async def run_with(statuses: list[int]) -> tuple[ServiceStatus, list[int]]:
    answered: list[int] = []

    async def put(request: web.Request) -> web.Response:
        status = statuses[min(len(answered), len(statuses) - 1)]
        answered.append(status)
        assert request.content_type == "application/json"
        return web.Response(status=status)

    app = web.Application()
    app.router.add_put(TOPIC, put)
    async with serve_app(app) as base:
        service = ProducerService(ProducerSettings(stream_url=base.replace("http://", "ws://")))
        try:
            await asyncio.wait_for(service.ensure_stream(asyncio.Event()), 20)
        finally:
            await service.connector.close()
    return service.status, answered


async def test_created_or_existing_is_fine() -> None:
    assert (await run_with([204]))[1] == [204]
    assert (await run_with([409]))[1] == [409]


async def test_a_publish_only_credential_does_not_stop_the_producer() -> None:
    _, answered = await run_with([403])
    assert answered == [403]


async def test_an_unavailable_broker_is_retried_and_reported() -> None:
    status, answered = await run_with([503, 503, 204])
    assert answered == [503, 503, 204]
    assert status.last_error is not None and "503" in status.last_error


async def test_a_refusal_that_retrying_cannot_fix_is_raised() -> None:
    with pytest.raises(InvalidRequest):
        await run_with([400])
