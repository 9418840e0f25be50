"""Opening WebSockets and REST calls to one broker, with the right credentials.

The `Connector` is the only place that knows about authentication (Pulsar token, Macrometa
API key and one-time passwords) and TLS, and the only place that turns a refused handshake
or a network failure into a typed error. Producer, consumer, reader and admin all use it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import os
import re
import ssl
from typing import Any

import aiohttp

from streampair import metrics
from streampair.config import StreamSettings
from streampair.errors import (
    BrokerUnavailable,
    CertificateError,
    HandshakeError,
    InvalidRequest,
    ProducerBusy,
    StreamError,
    StreamNotFound,
    SubscriptionBusy,
    Unauthorized,
    error_for_status,
)
from streampair.logs import get_logger
from streampair.naming import EndpointKind, StreamAddress

log = get_logger("streampair.connection")

#: Largest frame we accept from a broker; Pulsar's own WebSocket limit is 5 MiB.
MAX_FRAME_BYTES = 5 * 1024 * 1024 + 64 * 1024
#: Refusals whose meaning is in the body, not the status (missing namespace, terminated topic,
#: a reader's bad start position): the Connector asks again to read it.
EXPLAINED_STATUSES = (404, 500, 503)
_TITLE = re.compile(r"<title>(.*?)</title>", re.S | re.I)


def attempt_result(error: BaseException | None) -> str:
    """The `result` label of `streampair_connection_attempts_total` for an outcome."""
    if error is None:
        return "ok"
    if isinstance(error, SubscriptionBusy | ProducerBusy):
        return "busy"
    if isinstance(error, Unauthorized | CertificateError):
        return "unauthorized"
    if isinstance(error, StreamNotFound):
        return "not_found"
    if isinstance(error, InvalidRequest):
        return "invalid"
    return "unavailable"


class Connector:
    """Credentials, TLS and error mapping for one stream on one broker."""

    def __init__(self, settings: StreamSettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self.address = StreamAddress.from_settings(settings)
        self._session = session
        self._own_session = session is None
        self._ssl: ssl.SSLContext | bool = True
        if settings.stream_ca_bundle is not None:
            self._ssl = ssl.create_default_context(cafile=str(settings.stream_ca_bundle))

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.connect_timeout_seconds)
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    # -- credentials -------------------------------------------------------------------------

    def rest_headers(self) -> dict[str, str]:
        s = self.settings
        if s.stream_backend == "macrometa" and s.c8_api_key is not None:
            return {"Authorization": f"apikey {s.c8_api_key.get_secret_value()}"}
        if s.stream_auth_token is not None:
            scheme = "bearer" if s.stream_backend == "macrometa" else "Bearer"
            return {"Authorization": f"{scheme} {s.stream_auth_token.get_secret_value()}"}
        return {}

    async def one_time_password(self) -> str:
        """A fresh OTP for one WebSocket attempt (jsC8 fetches one per connection)."""
        data = await self.request_json("POST", self.address.otp_url(), ok=(200, 201))
        otp = data.get("otp") if isinstance(data, dict) else None
        if not isinstance(otp, str) or not otp:
            raise BrokerUnavailable(502, "the broker's OTP answer had no otp field")
        return otp

    async def ws_auth(self, params: dict[str, str]) -> dict[str, str]:
        """Headers for a WebSocket attempt; may add `otp` to `params`."""
        s = self.settings
        if s.stream_backend == "macrometa" and s.c8_api_key is not None:
            params["otp"] = await self.one_time_password()
            return {}
        return self.rest_headers()

    # -- REST --------------------------------------------------------------------------------

    async def request_json(
        self, method: str, url: str, *, ok: tuple[int, ...] = (200,), json_body: Any = None
    ) -> Any:
        """One REST call; a status outside `ok` raises the typed error for it."""
        try:
            async with self.session.request(
                method, url, headers=self.rest_headers(), json=json_body, ssl=self._ssl
            ) as response:
                text = await response.text()
                if response.status not in ok:
                    raise error_for_status(response.status, "admin", text)
                if not text:
                    return None
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    return text
        except aiohttp.ClientConnectorCertificateError as error:
            raise CertificateError(_certificate_message(url, error)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise BrokerUnavailable(0, f"{method} {_redact(url)} failed: {_describe(error)}") from None

    # -- WebSocket ---------------------------------------------------------------------------

    async def open(
        self, kind: EndpointKind, subscription: str | None = None, params: dict[str, str] | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """Open one WebSocket; count and log the attempt; raise a typed error if refused."""
        params = dict(params or {})
        url_for_logs = self.address.ws_url(kind, subscription, params)
        try:
            headers = await self.ws_auth(params)
            url = self.address.ws_url(kind, subscription, params)
            ws = await self.session.ws_connect(
                url,
                headers=headers,
                heartbeat=self.settings.heartbeat_seconds,
                max_msg_size=MAX_FRAME_BYTES,
                ssl=self._ssl,
                timeout=aiohttp.ClientWSTimeout(ws_close=self.settings.shutdown_timeout_seconds),
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as error:
            # aiohttp keeps no body of a refused upgrade; its message is a generic "Invalid response status".
            body = ""
            if error.status in EXPLAINED_STATUSES and "otp" not in params:
                body = await self._refusal_text(url, headers)
            failure: StreamError = error_for_status(error.status, kind, body)
            self._count(kind, url_for_logs, failure)
            raise failure from None
        except aiohttp.ClientConnectorCertificateError as error:
            failure = CertificateError(_certificate_message(url_for_logs, error))
            self._count(kind, url_for_logs, failure)
            raise failure from None
        except (HandshakeError, CertificateError) as error:  # from the OTP request
            self._count(kind, url_for_logs, error)
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            failure = BrokerUnavailable(0, f"cannot reach {self.address.ws_base}: {_describe(error)}")
            self._count(kind, url_for_logs, failure)
            raise failure from None
        self._count(kind, url_for_logs, None)
        return ws

    async def _refusal_text(self, url: str, headers: dict[str, str]) -> str:
        """The explanation of a refused upgrade: the same upgrade request once more as plain
        HTTP, whose error page aiohttp does let us read (Pulsar: Jetty's HTML page, its
        `<title>` says why). Empty if it cannot be had; never raises."""
        upgrade = {
            **headers,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        }
        http_url = "http" + url.removeprefix("ws") if url.startswith("ws") else url
        try:
            async with asyncio.timeout(self.settings.connect_timeout_seconds):
                async with self.session.get(http_url, headers=upgrade, ssl=self._ssl) as response:
                    if response.status == 101:  # accepted this time: nothing to explain
                        return ""
                    raw = await response.content.read(16384)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return ""
        text = raw.decode("utf-8", "replace")
        title = _TITLE.search(text)
        if title is not None:
            text = re.sub(r"^Error \d+ ", "", html.unescape(title.group(1)))
        return text

    def _count(self, kind: str, url: str, error: StreamError | None) -> None:
        result = attempt_result(error)
        metrics.CONNECTION_ATTEMPTS.labels(result=result).inc()
        if error is None:
            log.info("connected", kind=kind, url=url)
        else:
            log.debug("connection attempt failed", kind=kind, url=url, result=result, error=str(error))


def note_error_frame(kind: str, data: object) -> None:
    """Log an ERROR message from aiohttp's WebSocket; the connection closes after it.

    A frame aiohttp refused (over the size limit, bad opcode) is counted as malformed; a missed
    heartbeat or a network error is a lost connection, not the broker's fault of form.
    """
    detail = _describe(data) if isinstance(data, BaseException) else str(data)[:200]
    if not isinstance(data, aiohttp.WebSocketError):
        log.warning("connection to the broker failed; reconnecting", endpoint=kind, detail=detail)
        return
    too_big = data.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    label = "too_large" if too_big else "protocol_error"
    metrics.MALFORMED_FRAMES.labels(kind=label).inc()
    log.warning("malformed frame from broker; reconnecting", kind=label, endpoint=kind, detail=detail)


def _redact(url: str) -> str:
    """A URL for logs and errors: query strings may carry a token or an OTP."""
    return url.split("?", 1)[0]


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:200]


def _certificate_message(url: str, error: aiohttp.ClientConnectorCertificateError) -> str:
    return (
        f"TLS certificate of {_redact(url)} could not be verified ({_describe(error.certificate_error)}); "
        "set STREAM_CA_BUNDLE to the CA's PEM file if the broker uses a private CA"
    )


async def close_quietly(ws: aiohttp.ClientWebSocketResponse | None, wait_seconds: float = 1.0) -> None:
    """Close a WebSocket with 1000 without letting a dead peer hold up shutdown."""
    if ws is None or ws.closed:
        return
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        await asyncio.wait_for(ws.close(), wait_seconds)
