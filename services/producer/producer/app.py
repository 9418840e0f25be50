"""The producer service: the publishing loop, `POST /messages`, and the shared runtime."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from streampair.admin import StreamAdmin
from streampair.backoff import Backoff, retry
from streampair.connection import ConnectionState, Connector
from streampair.errors import SendError, SendTimeout, StreamError, Unauthorized
from streampair.logs import get_logger
from streampair.producer import Producer
from streampair.runtime import ServiceContext, ServiceRuntime, ServiceStatus

from producer.publisher import Publisher
from producer.settings import ProducerSettings

log = get_logger("producer")

MAX_PROPERTIES = 64


class ProducerService:
    """One producer process: the Producer, the periodic publisher and the HTTP publish API."""

    def __init__(self, settings: ProducerSettings) -> None:
        self.settings = settings
        self.status = ServiceStatus(
            "producer", details={"producer_id": settings.producer_id}, role="producer"
        )
        self.status.counters = self.counters
        self.connector = Connector(settings.client_config())
        self.producer = Producer(
            self.connector,
            max_pending=settings.max_in_flight,
            send_timeout=settings.send_timeout_seconds,
        )
        self.publisher = Publisher(self.producer, settings.producer_id, settings.publish_interval_seconds)
        self._stopping: asyncio.Event | None = None
        self.producer.on_state = self._on_connection

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/messages", self.post_message)]

    def counters(self) -> dict[str, Any]:
        return {
            "last_seq": self.publisher.seq,
            "published": self.publisher.published,
            "failed": self.publisher.failed,
            "in_flight": self.producer.in_flight,
        }

    def _on_connection(self, state: ConnectionState) -> None:
        self.status.update(connected=state.connected, error=state.error)
        if state.fatal is not None and self._stopping is not None:
            self._stopping.set()  # a refusal that retrying cannot fix: stop and exit non-zero

    async def run(self, ctx: ServiceContext) -> None:
        self._stopping = ctx.stopping
        try:
            await self.ensure_stream(ctx.stopping)
            await self.producer.start()
            # Half the grace for answers in flight; the rest for closing (see runtime.py).
            await self.publisher.run(ctx.stopping, drain_seconds=self.settings.shutdown_timeout_seconds / 2)
            if self.producer.fatal is not None:
                raise self.producer.fatal
        finally:
            await self.producer.close(drain_seconds=0)
            await self.connector.close()
            self.status.update(connected=False)

    async def ensure_stream(self, stopping: asyncio.Event) -> None:
        """Create the stream if needed; retry while the broker is unreachable.

        A credential that may publish but not administer (401/403 on the admin API) is not fatal:
        Pulsar and the embedded broker create a topic on first use, and the WebSocket handshake
        is the judge of whether we may publish.
        """
        admin = StreamAdmin(self.connector)

        async def attempt() -> bool:
            try:
                await admin.ensure_stream()
            except Unauthorized as error:
                log.warning(
                    "stream_not_ensured",
                    reason="the admin API refused us; publishing anyway",
                    error=str(error),
                )
            return True

        def waiting(error: StreamError, delay: float) -> None:
            self.status.update(error=str(error))
            log.warning("stream_not_ensured_yet", error=str(error), retry_in=round(delay, 3))

        await retry(attempt, stop=stopping, backoff=Backoff(base=0.5, cap=10.0), on_retry=waiting)

    async def post_message(self, request: web.Request) -> web.Response:
        """Publish a caller's message: {"payload": "...", "properties": {...}, "key": "..."}."""
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            raise _refusal(web.HTTPBadRequest, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _refusal(web.HTTPBadRequest, "body must be a JSON object")
        payload = body.get("payload")
        if not isinstance(payload, str):
            raise _refusal(web.HTTPUnprocessableEntity, "payload (a string) is required")
        properties = body.get("properties")
        if properties is None:
            properties = {}  # absent or null; [] or "" are refused below, not taken as empty
        if (
            not isinstance(properties, dict)
            or len(properties) > MAX_PROPERTIES
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in properties.items())
        ):
            raise _refusal(
                web.HTTPUnprocessableEntity,
                f"properties must be an object of at most {MAX_PROPERTIES} string values",
            )
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise _refusal(web.HTTPUnprocessableEntity, "key must be a string")
        if not self.producer.connected:
            raise _refusal(web.HTTPServiceUnavailable, "not connected to the broker")
        try:
            message_id = await self.producer.send(payload, properties, key=key)
        except SendError as error:
            raise _refusal(web.HTTPBadGateway, str(error)) from None
        except (SendTimeout, StreamError) as error:
            raise _refusal(web.HTTPServiceUnavailable, str(error)) from None
        return web.json_response({"messageId": message_id}, status=201)


def _refusal(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    status = kind.status_code
    return kind(text=json.dumps({"error": message, "status": status}), content_type="application/json")


def build_runtime(settings: ProducerSettings) -> ServiceRuntime:
    service = ProducerService(settings)
    return ServiceRuntime(
        "producer",
        settings,
        service.run,
        routes=service.routes(),
        max_body_bytes=settings.max_body_bytes,
        status=service.status,
    )
