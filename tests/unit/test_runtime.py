"""The shared HTTP runtime: health, readiness, status, metrics, JSON errors, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
from aiohttp import web
from streampair.runtime import ServiceContext, ServiceExit, ServiceRuntime, ServiceStatus
from streampair.settings import ServiceSettings

from harness import free_port, serve_app


async def idle(ctx: ServiceContext) -> None:
    await ctx.stopping.wait()


async def test_endpoints_report_state() -> None:
    settings = ServiceSettings(c8_api_key="acme.k.s3cr3t")  # type: ignore[arg-type]
    status = ServiceStatus("consumer", details={"subscription": "consumer-subscription"})
    rt = ServiceRuntime("consumer", settings, idle, status=status)
    async with serve_app(rt.app) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/livez") as r:
            assert r.status == 200
        async with s.get(base + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["reason"] == "not connected to the broker yet"
        rt.status.update(connected=True, role="standby")
        async with s.get(base + "/readyz") as r:
            assert r.status == 200  # a standby is ready: it can take over
            assert (await r.json())["role"] == "standby"
        async with s.get(base + "/status") as r:
            body = await r.json()
            assert body["service"] == "consumer" and body["role"] == "standby"
            assert body["subscription"] == "consumer-subscription"
            assert body["topic"] == "persistent://public/default/streamQuickstart"
            assert "s3cr3t" not in await r.text()
        async with s.get(base + "/metrics") as r:
            text = await r.text()
            assert "streampair_connection_attempts_total" in text or "streampair_broker_connected" in text
        async with s.get(base + "/nowhere") as r:
            assert r.status == 404 and (await r.json())["status"] == 404
        async with s.delete(base + "/status") as r:
            assert r.status == 405 and (await r.json())["status"] == 405
            assert "GET" in r.headers["Allow"]
        rt.status.update(stopping=True)
        async with s.get(base + "/readyz") as r:
            assert r.status == 503 and (await r.json())["reason"] == "stopping"


async def test_an_unexpected_handler_error_is_a_json_500_not_a_crash() -> None:
    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("bug")

    rt = ServiceRuntime("producer", ServiceSettings(), idle, routes=[web.get("/broken", broken)])
    async with serve_app(rt.app) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/broken") as r:
            assert r.status == 500 and (await r.json()) == {"error": "internal error", "status": 500}
        async with s.get(base + "/livez") as r:
            assert r.status == 200


async def test_sigterm_stops_the_worker_and_returns_0() -> None:
    stopped = asyncio.Event()

    async def worker(ctx: ServiceContext) -> None:
        await ctx.stopping.wait()
        stopped.set()

    rt = ServiceRuntime("producer", ServiceSettings(http_host="127.0.0.1", http_port=free_port()), worker)
    task = asyncio.create_task(rt.serve())
    await asyncio.wait_for(rt.listening.wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0
    assert stopped.is_set()


async def test_a_crashing_worker_exits_1_and_service_exit_keeps_its_code() -> None:
    async def crash(_: ServiceContext) -> None:
        raise ValueError("boom")

    async def busy(_: ServiceContext) -> None:
        raise ServiceExit(3)

    for worker, code in ((crash, 1), (busy, 3)):
        rt = ServiceRuntime("consumer", ServiceSettings(http_host="127.0.0.1", http_port=free_port()), worker)
        assert await asyncio.wait_for(rt.serve(), 10) == code


async def test_a_worker_that_fails_while_stopping_exits_1_without_escaping() -> None:
    from streampair.errors import Unauthorized

    async def fails_on_stop(ctx: ServiceContext) -> None:
        await ctx.stopping.wait()
        raise Unauthorized(401, "wrong key")

    async def exits_3_on_stop(ctx: ServiceContext) -> None:
        await ctx.stopping.wait()
        raise ServiceExit(3)

    for worker, code in ((fails_on_stop, 1), (exits_3_on_stop, 3)):
        rt = ServiceRuntime("producer", ServiceSettings(http_host="127.0.0.1", http_port=free_port()), worker)
        task = asyncio.create_task(rt.serve())
        await asyncio.wait_for(rt.listening.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == code
