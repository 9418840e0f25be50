"""How the client reaches one stream: plain data, no environment reading.

`ClientConfig` is what `Connector`, `Producer`, `Consumer`, `Reader` and `StreamAdmin` take.
The services build it from their environment (`streampair.settings`); a program that uses
the library builds it directly:

    config = ClientConfig(url="ws://localhost:8080", stream="orders")      # WebSocket API
    config = ClientConfig(url="pulsar://localhost:6650", stream="orders")  # binary protocol

The URL's scheme picks the transport (docs/transports.md): `pulsar://` and `pulsar+ssl://` the
binary protocol, `ws(s)://` and `http(s)://` the WebSocket API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Backend = Literal["pulsar", "macrometa"]

URL_SCHEMES = ("ws://", "wss://", "http://", "https://", "pulsar://", "pulsar+ssl://")
BINARY_SCHEMES = ("pulsar://", "pulsar+ssl://")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ClientConfig:
    """One stream on one broker, the credentials to reach it, and the client's timings."""

    url: str = "ws://localhost:8080"
    stream: str = "streamQuickstart"
    #: Base URL of the broker's admin REST API (stream creation, stats): http(s)://host[:port].
    #: Derived from `url` for the WebSocket API; for `pulsar://` only on a loopback host
    #: (http://<host>:8080, https://<host>:8443), else None: `StreamAdmin` then refuses.
    admin_url: str | None = None
    backend: Backend = "pulsar"
    #: Pulsar tenant and namespace (the Macrometa dialect derives its own from the fabric).
    tenant: str = "public"
    namespace: str = "default"
    #: Macrometa: fabric, global (c8globals.) or local (c8locals.) stream, and API key.
    fabric: str = "_system"
    global_stream: bool = True
    api_key: str | None = field(default=None, repr=False)
    #: Pulsar JWT or Macrometa bearer token.
    auth_token: str | None = field(default=None, repr=False)
    #: Files holding the token or the API key instead, read again for every connection attempt,
    #: so that a rotated secret (a Kubernetes Secret mounted as a file) is used without a restart.
    auth_token_file: Path | None = None
    api_key_file: Path | None = None
    #: PEM file of the CA that signed the broker's certificate; the system CAs otherwise.
    ca_bundle: Path | None = None
    #: Largest frame the broker accepts: Pulsar's `webSocketMaxTextFrameSize`, 1 MiB by default.
    #: A producer refuses a bigger message before sending it; a consumer receives up to a little more.
    max_frame_bytes: int = 1024 * 1024
    heartbeat_seconds: float = 5.0
    connect_timeout_seconds: float = 10.0
    reconnect_max_seconds: float = 10.0
    shutdown_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.url.startswith(URL_SCHEMES):
            raise ValueError(f"url must start with one of {', '.join(URL_SCHEMES)}")
        if not self.stream:
            raise ValueError("stream must not be empty")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        if self.auth_token is not None and self.auth_token_file is not None:
            raise ValueError("give auth_token or auth_token_file, not both")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("give api_key or api_key_file, not both")
        if self.binary and self.backend == "macrometa":
            raise ValueError("Macrometa has no binary protocol: use its https:// URL")
        if self.admin_url is not None and not self.admin_url.startswith(("http://", "https://")):
            raise ValueError("admin_url must start with http:// or https://")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.admin_url is None and self.binary:
            object.__setattr__(self, "admin_url", loopback_admin_url(self.url))
        elif self.admin_url is not None:
            object.__setattr__(self, "admin_url", self.admin_url.rstrip("/"))

    @property
    def binary(self) -> bool:
        """True for Pulsar's binary protocol (`pulsar://`, `pulsar+ssl://`)."""
        return self.url.startswith(BINARY_SCHEMES)

    def describe(self) -> dict[str, object]:
        """The configuration for logs and /status: secrets are only said to be set."""
        return describe_fields({f.name: getattr(self, f.name) for f in fields(self)}, SECRET_FIELDS)


SECRET_FIELDS = frozenset({"api_key", "auth_token"})


def loopback_admin_url(url: str) -> str | None:
    """The admin URL of a `pulsar(+ssl)://` URL on a loopback host (Pulsar's default ports);
    None for any other host: where a remote broker serves its admin API cannot be guessed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in LOOPBACK_HOSTS:
        return None
    netloc = f"[{host}]" if ":" in host else host
    return f"https://{netloc}:8443" if url.startswith("pulsar+ssl://") else f"http://{netloc}:8080"


def describe_fields(values: dict[str, object], secrets: frozenset[str]) -> dict[str, object]:
    """Values fit for a log line or JSON: secrets as "set" or None, paths as strings."""
    out: dict[str, object] = {}
    for name, value in values.items():
        if name in secrets or type(value).__name__ == "SecretStr":
            out[name] = None if value is None else "set"
        elif isinstance(value, Path):
            out[name] = str(value)
        else:
            out[name] = value
    return out
