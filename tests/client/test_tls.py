"""wss:// and https:// with a private CA: verified with STREAM_CA_BUNDLE, refused without it."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from streampair.admin import StreamAdmin
from streampair.config import ClientConfig
from streampair.connection import Connector
from streampair.errors import CertificateError
from streampair.producer import Producer


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[str]]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    schemes: list[str] = []

    async def producer(request: web.Request) -> web.WebSocketResponse:
        schemes.append(request.scheme)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            await ws.send_str(json.dumps({"result": "ok", "messageId": "tls-1", "context": frame["context"]}))
        return ws

    async def create(request: web.Request) -> web.Response:
        schemes.append(request.scheme)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/ws/v2/producer/persistent/public/default/streamQuickstart", producer)
    app.router.add_put("/admin/v2/persistent/public/default/streamQuickstart", create)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"wss://127.0.0.1:{port}", ca_file, schemes
    finally:
        await runner.cleanup()


async def test_wss_and_https_with_a_ca_bundle(tls_broker: tuple[str, Path, list[str]]) -> None:
    url, ca_file, schemes = tls_broker
    connector = Connector(ClientConfig(url=url, ca_bundle=ca_file))
    assert await StreamAdmin(connector).ensure_stream() is True
    async with Producer(connector) as p:
        assert await p.send("over tls") == "tls-1"
    await connector.close()
    assert schemes == ["https", "https"]


async def test_an_unknown_ca_is_a_clear_certificate_error_not_a_fallback(
    tls_broker: tuple[str, Path, list[str]],
) -> None:
    url, _, schemes = tls_broker
    connector = Connector(ClientConfig(url=url))
    with pytest.raises(CertificateError) as info:
        await connector.open("producer")
    assert "could not be verified" in str(info.value) and "STREAM_CA_BUNDLE" in str(info.value)
    assert not info.value.retryable
    with pytest.raises(CertificateError):
        await StreamAdmin(connector).ensure_stream()
    await connector.close()
    assert schemes == []  # nothing reached the server, in TLS or in plain text
