"""The producer service: the publishing loop, `POST /messages`, and the shared runtime."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from aiohttp import web
from streampair import tracing
from streampair.admin import StreamAdmin
from streampair.backoff import Backoff, retry
from streampair.connection import ConnectionState, Connector, read_secret
from streampair.errors import (
    CredentialUnavailable,
    InvalidMessage,
    MessageTooLarge,
    SendError,
    SendTimeout,
    SendUnconfirmed,
    StreamError,
    Unauthorized,
)
from streampair.logs import get_logger
from streampair.producer import Producer
from streampair.runtime import ServiceContext, ServiceRuntime, ServiceStatus
from streampair.webserver import read_body, refusal

from producer import metrics
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
            "unconfirmed": self.publisher.unconfirmed,
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

    def _authorized(self, request: web.Request) -> bool:
        """HTTP_AUTH_TOKEN(_FILE), compared in constant time; the file is read per request (rotation)."""
        token = self.settings.http_auth_token
        expected = (
            token.get_secret_value()
            if token
            else read_secret(self.settings.http_auth_token_file, "HTTP_AUTH_TOKEN_FILE")
        )
        if expected is None:
            return True  # no token configured: the API is open (the README says so)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())

    async def post_message(self, request: web.Request) -> web.Response:
        """Publish a caller's message: {"payload": "...", "properties": {...}, "key": "..."}.

        With tracing on, the publish continues the caller's trace (its `traceparent` header)."""
        with tracing.server_span("POST /messages", request.headers):
            return await self._post_message(request)

    async def _post_message(self, request: web.Request) -> web.Response:
        try:
            authorized = self._authorized(request)
        except CredentialUnavailable:
            raise refusal(web.HTTPServiceUnavailable, "HTTP_AUTH_TOKEN_FILE cannot be read") from None
        if not authorized:
            metrics.HTTP_UNAUTHORIZED.inc()
            error = refusal(
                web.HTTPUnauthorized, "POST /messages needs Authorization: Bearer <HTTP_AUTH_TOKEN>"
            )
            error.headers["WWW-Authenticate"] = 'Bearer realm="streampair"'
            raise error
        content_type = request.headers.get("Content-Type")
        if content_type is not None and not _is_json(request.content_type):
            raise refusal(web.HTTPUnsupportedMediaType, "Content-Type must be application/json")
        body = parse_json(await read_body(request))
        if not isinstance(body, dict):
            raise refusal(web.HTTPBadRequest, "body must be a JSON object")
        payload = body.get("payload")
        if not isinstance(payload, str):
            raise refusal(web.HTTPUnprocessableEntity, "payload (a string) is required")
        properties = body.get("properties")
        if properties is None:
            properties = {}  # absent or null; [] or "" are refused below, not taken as empty
        if (
            not isinstance(properties, dict)
            or len(properties) > MAX_PROPERTIES
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in properties.items())
        ):
            raise refusal(
                web.HTTPUnprocessableEntity,
                f"properties must be an object of at most {MAX_PROPERTIES} string values",
            )
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise refusal(web.HTTPUnprocessableEntity, "key must be a string")
        if not self.producer.connected:
            raise refusal(web.HTTPServiceUnavailable, "not connected to the broker")
        try:
            message_id = await self.producer.send(payload, properties, key=key)
        except InvalidMessage as error:
            raise refusal(web.HTTPUnprocessableEntity, str(error)) from None
        except MessageTooLarge as error:
            raise refusal(web.HTTPRequestEntityTooLarge, str(error)) from None
        except SendError as error:
            raise refusal(web.HTTPBadGateway, str(error)) from None
        except SendTimeout as error:
            raise refusal(web.HTTPServiceUnavailable, str(error), unconfirmed=error.written) from None
        except SendUnconfirmed as error:
            raise refusal(web.HTTPServiceUnavailable, str(error), unconfirmed=True) from None
        except StreamError as error:
            raise refusal(web.HTTPServiceUnavailable, str(error), unconfirmed=False) from None
        return web.json_response({"messageId": message_id}, status=201)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def parse_json(raw: bytes) -> object:
    """Strict JSON: UTF-8, no NaN or Infinity (other parsers refuse them), bounded nesting."""

    def no_constants(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN, or nested too deep
        raise refusal(web.HTTPBadRequest, "body is not valid JSON") from None


def build_runtime(settings: ProducerSettings) -> ServiceRuntime:
    service = ProducerService(settings)
    return ServiceRuntime(
        "producer",
        settings,
        service.run,
        routes=service.routes(),
        # A body larger than the broker's frame could never be published.
        max_body_bytes=settings.stream_max_frame_bytes,
        status=service.status,
    )
