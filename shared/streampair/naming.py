"""Where a stream lives: URLs and names in the Pulsar and Macrometa dialects.

Pulsar:     ws(s)://host/ws/v2/{kind}/persistent/{tenant}/{namespace}/{topic}[/{sub}]
            pulsar(+ssl)://host:port, topic persistent://{tenant}/{namespace}/{topic} (binary)
Macrometa:  wss://api-{host}/_ws/ws/v2/{kind}/persistent/{tenant}/c8global.{fabric}/c8globals.{stream}[/{sub}]
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit

from streampair.config import ClientConfig
from streampair.protocol import tenant_from_api_key

EndpointKind = Literal["producer", "consumer", "reader"]


def _is_local_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class StreamAddress:
    """Everything needed to name one stream on one broker, in one dialect."""

    backend: Literal["pulsar", "macrometa"]
    http_base: str  # http(s)://host[:port], for REST
    ws_base: str  # ws(s)://host[:port], for the WebSocket API
    tenant: str
    namespace: str
    topic: str  # local name of the topic (Macrometa: c8globals.{stream})
    stream: str  # the name users give (STREAM_NAME)
    fabric: str = "_system"
    is_global: bool = True

    @classmethod
    def from_config(cls, config: ClientConfig) -> StreamAddress:
        parts = urlsplit(config.url)
        secure = parts.scheme in ("https", "wss")
        host = parts.netloc
        if config.backend == "macrometa":
            hostname = parts.hostname or ""
            # GDN serves its API on api-{host}; a loopback broker (tests, demo) has no such name.
            if not hostname.startswith("api-") and not _is_local_host(hostname):
                host = "api-" + host
            scope = "global" if config.global_stream else "local"
            return cls(
                backend="macrometa",
                http_base=f"{'https' if secure else 'http'}://{host}",
                ws_base=f"{'wss' if secure else 'ws'}://{host}",
                tenant=tenant_from_api_key(config.api_key or _key_from_file(config)),
                namespace=f"c8{scope}.{config.fabric}",
                topic=f"c8{scope}s.{config.stream}",
                stream=config.stream,
                fabric=config.fabric,
                is_global=config.global_stream,
            )
        http_base = f"{'https' if secure else 'http'}://{host}"
        if config.binary:
            # The binary protocol has no HTTP: REST goes to the admin URL; "" when there is
            # none, and StreamAdmin says which setting is missing.
            http_base = config.admin_url or ""
        elif config.admin_url:
            http_base = config.admin_url
        return cls(
            backend="pulsar",
            http_base=http_base,
            ws_base=f"{'wss' if secure else 'ws'}://{host}",
            tenant=config.tenant,
            namespace=config.namespace,
            topic=config.stream,
            stream=config.stream,
        )

    @property
    def full_topic(self) -> str:
        """The Pulsar topic name, as in admin stats and logs."""
        return f"persistent://{self.tenant}/{self.namespace}/{self.topic}"

    def ws_url(
        self, kind: EndpointKind, subscription: str | None = None, params: dict[str, str] | None = None
    ) -> str:
        prefix = "/_ws/ws/v2" if self.backend == "macrometa" else "/ws/v2"
        path = f"{prefix}/{kind}/persistent/{self.tenant}/{self.namespace}/{quote(self.topic, safe='.')}"
        if kind == "consumer":
            if not subscription:
                raise ValueError("a consumer needs a subscription name")
            path += "/" + quote(subscription, safe="")
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.ws_base}{path}{query}"

    def admin_topic_url(self) -> str:
        """Pulsar admin REST URL of the topic (create with PUT, stats below it)."""
        topic = quote(self.topic, safe=".")
        return f"{self.http_base}/admin/v2/persistent/{self.tenant}/{self.namespace}/{topic}"

    def streams_url(self) -> str:
        """Macrometa streams REST collection of the fabric."""
        return f"{self.http_base}/_fabric/{self.fabric}/_api/streams"

    def otp_url(self) -> str:
        return f"{self.http_base}/apid/otp"


def _key_from_file(config: ClientConfig) -> str | None:
    """The API key in C8_API_KEY_FILE at start: a rotated key keeps its tenant."""
    if config.api_key_file is None:
        return None
    try:
        return config.api_key_file.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None
