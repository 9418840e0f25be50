"""The producer service: the publishing loop, `POST /messages`, and the shared runtime."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from streampair.admin import StreamAdmin
from streampair.backoff import Backoff
from streampair.connection import Connector
from streampair.errors import SendError, SendTimeout, StreamError, Unauthorized
from streampair.logs import get_logger
from streampair.producer import Producer
from streampair.runtime import ServiceContext, ServiceRuntime, ServiceStatus

from producer.publisher import Publisher
from producer.settings import ProducerSettings

log = get_logger("producer")


@dataclass
class ProducerSlot:
    """Where the worker puts its Producer for the HTTP handlers (the app is frozen by then)."""

    producer: Producer | None = None


PRODUCER = web.AppKey("producer", ProducerSlot)

MAX_PROPERTIES = 64


async def ensure_stream(admin: StreamAdmin, stopping: asyncio.Event, status: ServiceStatus) -> None:
    """Create the stream if needed; retry while the broker is unreachable.

    A credential that may publish but not administer (401/403 on the admin API) is not fatal:
    Pulsar and the embedded broker create a topic on first use, and the WebSocket handshake
    is the judge of whether we may publish.
    """
    backoff = Backoff(base=0.5, cap=10.0)
    while not stopping.is_set():
        try:
            await admin.ensure_stream()
            return
        except Unauthorized as error:
            log.warning("cannot create the stream through the admin API; publishing anyway", error=str(error))
            return
        except StreamError as error:
            if not error.retryable:
                raise
            status.last_error = str(error)
            delay = backoff.next_delay()
            log.warning(
                "cannot ensure the stream exists yet; retrying", error=str(error), retry_in=round(delay, 3)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)


async def work(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, ProducerSettings)
    connector = Connector(settings)
    producer = Producer(
        connector,
        max_pending=settings.max_in_flight,
        send_timeout=settings.send_timeout_seconds,
    )
    publisher = Publisher(producer, settings.producer_id, settings.publish_interval_seconds)
    ctx.app[PRODUCER].producer = producer
    ctx.status.role = "producer"
    ctx.status.extra["producer_id"] = settings.producer_id

    def counters() -> dict[str, Any]:
        return {
            "last_seq": publisher.seq,
            "published": publisher.published,
            "failed": publisher.failed,
            "in_flight": producer.in_flight,
        }

    ctx.status.counters = counters

    def mirror_state() -> None:
        """Keep /status and /readyz in step with the producer's connection."""
        ctx.status.connected = producer.connected
        ctx.status.last_error = producer.last_error
        if producer.fatal is not None:
            ctx.stopping.set()  # a refusal that retrying cannot fix: stop and exit non-zero

    producer.on_state = mirror_state
    try:
        await ensure_stream(StreamAdmin(connector), ctx.stopping, ctx.status)
        await producer.start()
        # Half the grace for answers in flight; the rest for closing (see runtime.py).
        await publisher.run(ctx.stopping, drain_seconds=settings.shutdown_timeout_seconds / 2)
        if producer.fatal is not None:
            raise producer.fatal
    finally:
        await producer.close(drain_seconds=0)
        await connector.close()
        ctx.status.connected = False


async def post_message(request: web.Request) -> web.Response:
    """Publish a caller's message: {"payload": "...", "properties": {...}, "key": "..."}."""
    producer = request.app[PRODUCER].producer
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        raise web.HTTPBadRequest(
            text=_error("body is not valid JSON"), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=_error("body must be a JSON object"), content_type="application/json")
    payload = body.get("payload")
    if not isinstance(payload, str):
        raise web.HTTPUnprocessableEntity(
            text=_error("payload (a string) is required"), content_type="application/json"
        )
    properties = body.get("properties")
    if properties is None:
        properties = {}  # absent or null; [] or "" are refused below, not taken as empty
    if (
        not isinstance(properties, dict)
        or len(properties) > MAX_PROPERTIES
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in properties.items())
    ):
        raise web.HTTPUnprocessableEntity(
            text=_error(f"properties must be an object of at most {MAX_PROPERTIES} string values"),
            content_type="application/json",
        )
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise web.HTTPUnprocessableEntity(
            text=_error("key must be a string"), content_type="application/json"
        )
    if producer is None or not producer.connected:
        raise web.HTTPServiceUnavailable(
            text=_error("not connected to the broker"), content_type="application/json"
        )
    try:
        message_id = await producer.send(payload, properties, key=key)
    except SendError as error:
        raise web.HTTPBadGateway(text=_error(str(error)), content_type="application/json") from None
    except (SendTimeout, StreamError) as error:
        raise web.HTTPServiceUnavailable(text=_error(str(error)), content_type="application/json") from None
    return web.json_response({"messageId": message_id}, status=201)


def _error(message: str) -> str:
    return json.dumps({"error": message})


def build_runtime(settings: ProducerSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(
        "producer",
        settings,
        work,
        routes=[web.post("/messages", post_message)],
        max_body_bytes=settings.max_body_bytes,
    )
    runtime.app[PRODUCER] = ProducerSlot()
    return runtime
