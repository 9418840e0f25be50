"""The HTTP edge in-process: JSON for aiohttp's own errors, head and body deadlines."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from streampair import webserver
from streampair.webserver import AppRunner, json_errors, read_body


async def serve(app: web.Application) -> tuple[AppRunner, int]:
    runner = AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await read_body(request))})


def app() -> web.Application:
    application = web.Application(middlewares=[json_errors])
    application.router.add_post("/echo", echo)
    return application


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Status line and headers, and the body of one response (by its Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), 10)


async def raw_exchange(port: int, data: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await read_response(reader)
    finally:
        writer.close()


async def test_aiohttps_own_400s_are_json_and_do_not_echo_the_request() -> None:
    runner, port = await serve(app())
    try:
        long_header = b"X-Evil: " + b"<script>" * 2000
        head, body = await raw_exchange(
            port, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + long_header + b"\r\n\r\n"
        )
        assert b" 400 " in head.split(b"\r\n")[0] and b"application/json" in head
        assert json.loads(body) == {"error": "request line or header too long", "status": 400}
        assert b"<script>" not in head + body
        head, body = await raw_exchange(
            port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"
        )
        assert json.loads(body) == {"error": "malformed HTTP request", "status": 400}
    finally:
        await runner.cleanup()


async def test_a_client_that_never_finishes_its_head_is_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webserver, "HEAD_TIMEOUT_SECONDS", 0.3)
    runner, port = await serve(app())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and then nothing: a slowloris
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
    finally:
        await runner.cleanup()


async def test_a_body_that_never_arrives_is_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webserver, "BODY_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(webserver.read_body, "__defaults__", (0.3,))
    runner, port = await serve(app())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf a body")
        await writer.drain()
        head, body = await read_response(reader)
        writer.close()
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["status"] == 408
    finally:
        await runner.cleanup()
