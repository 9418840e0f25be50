"""Settings from the environment, validated once at start.

Every service shares `StreamSettings`; a service adds its own fields in a subclass. A wrong
value ends the process with one line naming the variable and what it accepts, status 2,
no traceback and never the value of a secret (`load_settings`).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import sys
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streampair.protocol import SubscriptionType

Port = Annotated[int, Field(ge=1, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]

#: Exit status for a configuration error (as in BSD sysexits' EX_USAGE spirit: "you called me wrong").
EXIT_CONFIG = 2


class StreamSettings(BaseSettings):
    """Where the stream is and how to reach it; shared by producer, consumer and tools."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    stream_backend: Literal["pulsar", "macrometa"] = "pulsar"
    stream_url: str = "ws://localhost:8080"
    stream_name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")] = (
        "streamQuickstart"
    )
    stream_tenant: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")] = "public"
    stream_namespace: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")] = "default"
    c8_fabric: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")] = "_system"
    c8_api_key: SecretStr | None = None
    stream_global: bool = True
    stream_auth_token: SecretStr | None = None
    stream_ca_bundle: Path | None = None
    subscription_name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")] = (
        "consumer-subscription"
    )
    subscription_type: SubscriptionType = "Exclusive"
    http_port: Port = 8000
    http_host: str = "0.0.0.0"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] | None = None
    heartbeat_seconds: PositiveSeconds = 5.0
    connect_timeout_seconds: PositiveSeconds = 10.0
    reconnect_max_seconds: PositiveSeconds = 10.0
    shutdown_timeout_seconds: PositiveSeconds = 5.0

    @field_validator("stream_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
        except ValueError:
            raise ValueError("has an invalid port") from None
        if not parts.hostname or not _is_host(parts.hostname):
            raise ValueError("must name a host, as in ws://localhost:8080")
        if parts.username or parts.password or parts.query or parts.fragment:
            # Credentials here would end up in logs and /status; they have settings of their own.
            raise ValueError("must not carry credentials or a query (use C8_API_KEY or STREAM_AUTH_TOKEN)")
        return value.rstrip("/")

    @field_validator("http_host")
    @classmethod
    def _bind_host(cls, value: str) -> str:
        value = value.strip()
        if not _is_host(value):
            raise ValueError("must be an IP address or a host name")
        return value

    @field_validator("c8_api_key", "stream_auth_token", mode="before")
    @classmethod
    def _secret_shape(cls, value: object) -> object:
        # Surrounding whitespace (a trailing newline from a secret file) is dropped; empty means
        # unset; anything else with spaces or control characters would corrupt a header.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("stream_ca_bundle")
    @classmethod
    def _bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("must be the path of a readable PEM file")
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError, ValueError):
                raise ValueError("must be a PEM file of CA certificates") from None
        return value

    def describe(self) -> dict[str, object]:
        """The settings for /status and the start-up log: secrets are only said to be set."""
        out: dict[str, object] = {}
        for name, value in self:
            if isinstance(value, SecretStr):
                out[name] = "set"
            elif value is None:
                out[name] = None
            else:
                out[name] = str(value) if isinstance(value, Path) else value
        return out


S = TypeVar("S", bound=BaseSettings)

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"  # "_": compose service names
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def _is_host(value: str) -> bool:
    """An IP address (v4 or v6) or a DNS host name; not an all-numeric name that is no address."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        pass
    return _HOSTNAME.fullmatch(value) is not None and not re.fullmatch(r"[0-9.]+", value)


def format_validation_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line: the first bad variable, what it accepts, and (unless secret) what it got."""
    first = error.errors()[0]
    field_name = str(first["loc"][0]) if first["loc"] else "?"
    variable = field_name.upper()
    info = cls.model_fields.get(field_name)
    # A URL may carry a password by mistake: never echo it either.
    secret = info is not None and ("SecretStr" in repr(info.annotation) or field_name == "stream_url")
    reason = first["msg"]
    if first["type"] == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        reason = f"expected one of {expected}"
    reason = reason.removeprefix("Value error, ")
    got = "" if secret else f" (got {first.get('input')!r})"
    return f"invalid setting {variable}: {reason}{got}"


def load_settings(cls: type[S], service: str) -> S:
    """Build `cls` from the environment or exit with status 2 and one line on stderr."""
    try:
        return cls()
    except ValidationError as error:
        print(f"{service}: {format_validation_error(cls, error)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except ValueError as error:  # pydantic-settings raises this for unparsable env values
        line = " ".join(str(error).split())[:300]
        print(f"{service}: invalid setting: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
