"""Reaching one broker with the right credentials: REST calls, WebSockets, and the transport.

The `Connector` is the only place that knows about authentication (Pulsar token, Macrometa
API key and one-time passwords) and TLS, and the only place that turns a refused handshake
or a network failure into a typed error. Producer, consumer, reader and admin all use it.
Its `transport` (chosen by the URL's scheme: transport.py) opens their channels; the binary
transport takes its credentials, explanations and attempt counting from here too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from streampair import metrics
from streampair.config import ClientConfig
from streampair.errors import (
    BrokerUnavailable,
    CertificateError,
    CredentialUnavailable,
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

if TYPE_CHECKING:
    from streampair.transport import Transport

log = get_logger("streampair.connection")

#: A delivered frame carries more than the producer's (messageId, publishTime, redeliveryCount):
#: a consumer accepts this much over the configured limit, so it can receive what was accepted.
DELIVERY_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionState:
    """What a producer, consumer or reader reports to its `on_state` callback after each change."""

    connected: bool
    #: Why there is no connection (the last failure), None while connected.
    error: str | None = None
    #: A refusal that retrying cannot fix (wrong credentials, say): the owner should stop.
    fatal: StreamError | None = None
    #: Connected, but no message can flow (`error` says why): not ready.
    blocked: bool = False


StateCallback = Callable[[ConnectionState], None]

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
    if isinstance(error, Unauthorized):
        return "forbidden" if error.status == 403 else "unauthenticated"
    if isinstance(error, CertificateError | CredentialUnavailable):
        return "unauthenticated"
    if isinstance(error, StreamNotFound):
        return "not_found"
    if isinstance(error, InvalidRequest):
        return "invalid"
    return "unavailable"


class Connector:
    """Credentials, TLS and error mapping for one stream on one broker."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.address = StreamAddress.from_config(config)
        self._session = session
        self._own_session = session is None
        self._ssl: ssl.SSLContext | bool = True
        if config.ca_bundle is not None:
            self._ssl = ssl.create_default_context(cafile=str(config.ca_bundle))
        self._transport: Transport | None = None
        metrics.CLIENT.register()

    @property
    def transport(self) -> Transport:
        """The protocol of `config.url` (`pulsar://`: binary, else WebSocket), made on first use."""
        if self._transport is None:
            from streampair.transport import transport_for

            self._transport = transport_for(self)
        return self._transport

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.connect_timeout_seconds)
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
        if self._own_session and self._session is not None:
            await self._session.close()

    # -- credentials -------------------------------------------------------------------------

    def api_key(self) -> str | None:
        """The Macrometa API key: the configured one, or the file's content as it is now."""
        return self.config.api_key or read_secret(self.config.api_key_file, "C8_API_KEY_FILE")

    def auth_token(self) -> str | None:
        """The token: the configured one, or the file's content as it is now (rotation)."""
        return self.config.auth_token or read_secret(self.config.auth_token_file, "STREAM_AUTH_TOKEN_FILE")

    def credential_setting(self) -> str:
        """The setting a refusal of our credentials points at."""
        c = self.config
        if c.backend == "macrometa" and (c.api_key or c.api_key_file):
            return "C8_API_KEY_FILE" if c.api_key_file else "C8_API_KEY"
        if c.auth_token_file:
            return "STREAM_AUTH_TOKEN_FILE"
        return "STREAM_AUTH_TOKEN" if c.auth_token else "STREAM_AUTH_TOKEN (not set)"

    def rest_headers(self) -> dict[str, str]:
        backend = self.config.backend
        if backend == "macrometa" and (api_key := self.api_key()) is not None:
            return {"Authorization": f"apikey {api_key}"}
        if (token := self.auth_token()) is not None:
            return {"Authorization": f"{'bearer' if backend == 'macrometa' else 'Bearer'} {token}"}
        return {}

    async def one_time_password(self) -> str:
        """A fresh OTP for one WebSocket attempt (jsC8 fetches one per connection)."""
        try:
            data = await self.request_json("POST", self.address.otp_url(), ok=(200, 201))
        except Unauthorized as error:
            raise Unauthorized(
                error.status,
                f"API key refused (HTTP {error.status}) when asking for a one-time password; "
                "check C8_API_KEY",
            ) from None
        otp = data.get("otp") if isinstance(data, dict) else None
        if not isinstance(otp, str) or not otp:
            raise BrokerUnavailable(502, "the broker's OTP answer had no otp field")
        return otp

    async def ws_auth(self, params: dict[str, str]) -> dict[str, str]:
        """Headers for a WebSocket attempt; may add `otp` to `params`."""
        if self.config.backend == "macrometa" and (self.config.api_key or self.config.api_key_file):
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
                heartbeat=self.config.heartbeat_seconds,
                max_msg_size=self.config.max_frame_bytes + DELIVERY_OVERHEAD_BYTES,
                ssl=self._ssl,
                timeout=aiohttp.ClientWSTimeout(ws_close=self.config.shutdown_timeout_seconds),
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as error:
            # aiohttp keeps no body of a refused upgrade; its message is a generic "Invalid response status".
            body = ""
            if error.status in EXPLAINED_STATUSES and "otp" not in params:
                body = await self._refusal_text(url, headers)
            failure: StreamError = self.explained(error_for_status(error.status, kind, body), kind)
            self.count_attempt(kind, url_for_logs, failure)
            raise failure from None
        except aiohttp.ClientConnectorCertificateError as error:
            failure = CertificateError(_certificate_message(url_for_logs, error))
            self.count_attempt(kind, url_for_logs, failure)
            raise failure from None
        except (HandshakeError, CertificateError, CredentialUnavailable) as error:  # OTP request, secret file
            self.count_attempt(kind, url_for_logs, error)
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            failure = BrokerUnavailable(0, f"cannot reach {self.address.ws_base}: {_describe(error)}")
            self.count_attempt(kind, url_for_logs, failure)
            raise failure from None
        self.count_attempt(kind, url_for_logs, None)
        return ws

    def explained(self, error: HandshakeError, kind: str) -> HandshakeError:
        """A refusal of our credentials says which setting to fix, and how (401 or 403)."""
        if not isinstance(error, Unauthorized):
            return error
        setting = self.credential_setting()
        if error.status == 403:
            verb = {"producer": "publish to", "consumer": "consume from", "reader": "read"}.get(kind, "use")
            why = (
                f"authenticated, but the role of {setting} may not {verb} {self.address.full_topic}: grant it"
            )
        else:
            why = f"not authenticated: {setting} is missing, wrong or expired"
        return Unauthorized(error.status, f"{error} ({why})")

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
            async with asyncio.timeout(self.config.connect_timeout_seconds):
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

    def count_attempt(self, kind: str, url: str, error: StreamError | None) -> None:
        result = attempt_result(error)
        metrics.CONNECTION_ATTEMPTS.labels(result=result).inc()
        if error is None:
            log.info("connected", endpoint=kind, url=url)
        else:
            log.debug("connection_attempt_failed", endpoint=kind, url=url, result=result, error=str(error))


def is_too_large(data: object) -> bool:
    """An ERROR message for a frame over our `max_msg_size` (aiohttp then closes with 1009)."""
    return isinstance(data, aiohttp.WebSocketError) and data.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


def note_error_frame(kind: str, data: object) -> None:
    """Log an ERROR message from aiohttp's WebSocket; the connection closes after it.

    A frame aiohttp refused (over the size limit, bad opcode) is counted as malformed; a missed
    heartbeat or a network error is a lost connection, not the broker's fault of form.
    """
    detail = _describe(data) if isinstance(data, BaseException) else str(data)[:200]
    if not isinstance(data, aiohttp.WebSocketError):
        log.warning("connection_failed", endpoint=kind, detail=detail)
        return
    label = "too_large" if is_too_large(data) else "protocol_error"
    metrics.MALFORMED_FRAMES.labels(kind=label).inc()
    log.warning("malformed_frame", kind=label, endpoint=kind, detail=detail, reconnecting=True)


def read_secret(path: Path | None, setting: str) -> str | None:
    """A secret file's content without surrounding white space; None without a file."""
    if path is None:
        return None
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialUnavailable(f"cannot read {setting} ({path}): {error.__class__.__name__}") from None
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise CredentialUnavailable(f"{setting} ({path}) is empty or holds spaces or control characters")
    return value


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
