"""The aiohttp application: one port for Pulsar WebSockets, Pulsar admin, Macrometa, metrics.

Authentication (when `BROKER_AUTH_TOKEN` is set) covers every endpoint except
`GET /admin/v2/brokers/health` and `GET /metrics`: probes and Prometheus need no secret, and
neither answer contains one (metrics do name topics and subscriptions). With roles
(`BROKER_TOKEN_SECRET_KEY`) the health check wants a superuser, as Pulsar's does; `/metrics`
stays open (broker.permissions).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web
from streampair.logs import get_logger

from broker import admin, macrometa, pulsar_ws
from broker.auth import Authenticator
from broker.broker import Broker
from broker.metrics import METRICS_REGISTRY, make_registry, metrics
from broker.routing import Router
from broker.settings import BrokerSettings
from broker.state import STATE, BrokerState
from broker.storage import Store

log = get_logger("broker.app")


def create_app(settings: BrokerSettings) -> web.Application:
    """Open the store (raises `StorageError`), recover state, and wire the endpoints."""
    store = Store(settings.broker_data_dir, sync=settings.broker_sync)
    broker = Broker(store, retention=settings.broker_retention_messages)
    try:
        broker.load()
    except Exception:
        store.close()
        raise
    app = web.Application(client_max_size=settings.broker_max_frame_bytes)
    app[STATE] = BrokerState(
        settings=settings,
        broker=broker,
        auth=Authenticator(
            settings.broker_auth_token,
            settings.broker_otp_ttl_seconds,
            secret_key=settings.secret_key(),
            superusers=settings.superusers(),
        ),
    )
    app[METRICS_REGISTRY] = make_registry(broker)
    router = Router()
    router.add("GET", r"/metrics", metrics, public=True)
    admin.register(router)
    macrometa.register(router)
    pulsar_ws.register(router)
    app.router.add_route("*", "/{tail:.*}", router.handle)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_run_broker)
    return app


async def _run_broker(app: web.Application) -> AsyncIterator[None]:
    broker = app[STATE].broker
    await broker.start()
    yield
    await broker.stop()
    log.info("broker_stopped")


async def _close_sockets(app: web.Application) -> None:
    """Tell every client we are going away (1001) so it reconnects elsewhere or later."""
    sockets = list(app[STATE].sockets)
    if not sockets:
        return

    async def close(ws: web.WebSocketResponse) -> None:
        try:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"broker shutting down")
        except Exception as error:  # a peer that vanished must not hold up the others
            log.debug("close_failed", error=type(error).__name__)

    await asyncio.wait([asyncio.ensure_future(close(ws)) for ws in sockets], timeout=2.0)


def ssl_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    """Server TLS from BROKER_TLS_CERT/BROKER_TLS_KEY (raises ssl.SSLError or OSError)."""
    if settings.broker_tls_cert is None or settings.broker_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.broker_tls_cert, settings.broker_tls_key)
    return context
