"""The services' HTTP edge: one JSON error shape for every error, and no connection held forever.

- Every 4xx/5xx is `{"error": "...", "status": N}`: those of our handlers (the `json_errors`
  middleware) and those aiohttp answers itself before any handler runs (a request line or
  header over 8190 bytes, a bad Content-Length), which would otherwise be text that echoes
  the request. A client's mistake is logged once at warning level, without a traceback.
- A client must send its request head within `HEAD_TIMEOUT_SECONDS` and may idle between
  requests for `KEEPALIVE_SECONDS`; handlers bound their body reads (`read_body`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import LineTooLong

from streampair.logs import get_logger

log = get_logger("streampair.http")

HEAD_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 10.0
KEEPALIVE_SECONDS = 75.0  # as nginx: long enough for Prometheus' 15 s scrapes to reuse connections


def error_body(status: int, message: str, **extra: Any) -> str:
    return json.dumps({"error": message, "status": status, **extra})


def refusal(kind: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error with our JSON body, to raise from a handler."""
    text = error_body(kind.status_code, message, **extra)
    if issubclass(kind, web.HTTPRequestEntityTooLarge):  # its constructor wants the sizes
        return kind(max_size=0, actual_size=0, text=text, content_type="application/json")
    return kind(text=text, content_type="application/json")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer is JSON with a reason; an unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        if error.content_type == "application/json" and error.text:
            body = error.text
        else:
            body = error_body(error.status, error.reason)
        if error.status < 500:
            log.warning("http_client_error", status=error.status, method=request.method, path=request.path)
        headers = {
            name: error.headers[name] for name in ("Allow", "WWW-Authenticate") if name in error.headers
        }
        return web.Response(status=error.status, text=body, content_type="application/json", headers=headers)
    except Exception:
        log.exception("http_handler_failed", path=request.path)
        return web.json_response({"error": "internal error", "status": 500}, status=500)


async def read_body(request: web.Request, seconds: float = BODY_TIMEOUT_SECONDS) -> bytes:
    """The whole body, or 408 if the client does not send it in time (413 over the app's limit)."""
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise refusal(
            web.HTTPRequestTimeout, f"the request body did not arrive within {seconds:g} s"
        ) from None


class _RequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with our error shape and a deadline for the request head."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().call_later(HEAD_TIMEOUT_SECONDS, self._head_deadline)

    def _head_deadline(self) -> None:
        # No complete request line and headers yet on this connection: a slow or idle client.
        if self._request_count == 0 and self.transport is not None and not self.transport.is_closing():
            log.warning("http_head_timeout", seconds=HEAD_TIMEOUT_SECONDS)
            self.transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        reason = (
            "request line or header too long" if isinstance(exc, LineTooLong) else "malformed HTTP request"
        )
        log.warning("http_client_error", status=status, reason=reason, error_type=type(exc).__name__)
        response = web.Response(
            status=status, text=error_body(status, reason), content_type="application/json"
        )
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `_RequestHandler`.

    aiohttp has no public hook for the connection handler's class; `_make_server` is the one
    place that builds it. tests/unit/test_webserver.py fails if this stops working.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        # auto_decompress=False: a body is taken as sent. aiohttp would inflate a gzip body, and
        # after an early 413 it drains the rest on the event loop: a 200 KB gzip bomb stalled the
        # producer for 1-2 s (bench/chaos_hostile.py). Nothing here accepts compressed bodies.
        super().__init__(
            app, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS, auto_decompress=False, **kwargs
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state; only the factory of connection handlers differs
        return server
