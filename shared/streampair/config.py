"""Settings from the environment, validated once at start.

Every service shares `StreamSettings`; a service adds its own fields in a subclass. A wrong
value ends the process with one line naming the variable and what it accepts, status 2,
no traceback and never the value of a secret (`load_settings`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SubscriptionType = Literal["Exclusive", "Shared", "Failover", "Key_Shared"]
SUBSCRIPTION_TYPES: tuple[str, ...] = ("Exclusive", "Shared", "Failover", "Key_Shared")
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
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("stream_ca_bundle")
    @classmethod
    def _bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("must be the path of a readable PEM file")
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


def format_validation_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line: the first bad variable, what it accepts, and (unless secret) what it got."""
    first = error.errors()[0]
    field_name = str(first["loc"][0]) if first["loc"] else "?"
    variable = field_name.upper()
    info = cls.model_fields.get(field_name)
    secret = info is not None and "SecretStr" in repr(info.annotation)
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
