"""Broker settings from the environment (`BROKER_*`, `LOG_LEVEL`, `LOG_FORMAT`).

The broker refuses to listen beyond loopback without `BROKER_AUTH_TOKEN` or
`BROKER_TOKEN_SECRET_KEY`: an open broker on a network lets anyone read and delete every stream.
A private network where that is wanted (the docker-compose "lite" profile binds 0.0.0.0 inside
its own network) says so explicitly with
`BROKER_ALLOW_UNAUTHENTICATED=true`. `load_settings` turns a refusal into one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.auth import TokenKeyError, load_secret_key

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})
MIB = 1024 * 1024


class BrokerSettings(BaseSettings):
    """What the embedded broker listens on, where it keeps data, and who may talk to it.

    Field order matters: `broker_host` is validated last so that it can see the token and the
    explicit opt-out flag.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    broker_auth_token: SecretStr | None = None
    #: Roles, as Pulsar's `tokenSecretKey`: `file:///path` (raw key bytes) or `data:;base64,<key>`;
    #: HS256 JWTs signed with it authenticate as their `sub`.
    broker_token_secret_key: SecretStr | None = None
    #: Pulsar's `superUserRoles`: roles that may do anything (comma-separated). Checked even when
    #: unset (validate_default): roles without a superuser could never be granted anything.
    broker_superuser_roles: str = Field(default="", validate_default=True)
    broker_allow_unauthenticated: bool = False
    broker_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    broker_data_dir: Path = Path("./.broker-data")
    broker_tls_cert: Path | None = None
    broker_tls_key: Path | None = None
    #: Pulsar's default `webSocketMaxTextFrameSize` (1 MiB); Jetty closes with 1009 beyond it.
    broker_max_frame_bytes: Annotated[int, Field(ge=1024, le=64 * MIB)] = MIB
    #: Unanswered publishes per producer connection before the broker stops reading from it.
    broker_max_pending_per_producer: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    #: Messages kept on a topic that has no subscription (for readers); older ones are dropped.
    broker_retention_messages: Annotated[int, Field(ge=0, le=100_000_000)] = 100_000
    #: `full` fsyncs every commit (survives power loss); `normal` survives a process crash.
    broker_sync: Literal["normal", "full"] = "normal"
    broker_otp_ttl_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    broker_shutdown_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: WebSocket ping interval; a client that misses a pong for half of it is dropped, so a
    #: half-open connection cannot hold an Exclusive subscription (or permits) forever.
    broker_heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] | None = None
    broker_host: str = "127.0.0.1"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("broker_tls_cert", "broker_tls_key")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("must be the path of a readable PEM file")
        return value

    @field_validator("broker_auth_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty when set")
        return value

    @field_validator("broker_token_secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                load_secret_key(value.get_secret_value())
            except TokenKeyError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("broker_superuser_roles")
    @classmethod
    def _superusers(cls, value: str, info: ValidationInfo) -> str:
        roles = [r.strip() for r in value.split(",") if r.strip()]
        if any(not r.isprintable() or any(c.isspace() for c in r) for r in roles):
            raise ValueError("must be role names separated by commas (no spaces inside a role)")
        if info.data.get("broker_token_secret_key") is not None and not roles:
            raise ValueError(
                "must name at least one role when BROKER_TOKEN_SECRET_KEY is set (who else would grant?)"
            )
        return ",".join(roles)

    def secret_key(self) -> bytes | None:
        key = self.broker_token_secret_key
        return None if key is None else load_secret_key(key.get_secret_value())

    def superusers(self) -> frozenset[str]:
        return frozenset(r for r in self.broker_superuser_roles.split(",") if r)

    @field_validator("broker_host")
    @classmethod
    def _exposure(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if value in LOOPBACK_HOSTS:
            return value
        secured = info.data.get("broker_auth_token") or info.data.get("broker_token_secret_key")
        if not secured and not info.data.get("broker_allow_unauthenticated"):
            raise ValueError(
                "refusing to listen beyond loopback without BROKER_AUTH_TOKEN or BROKER_TOKEN_SECRET_KEY "
                "(set one, or BROKER_ALLOW_UNAUTHENTICATED=true on a private network)"
            )
        return value

    def check_tls_pair(self) -> str | None:
        """Both TLS files or neither; returns a one-line problem or None."""
        if (self.broker_tls_cert is None) != (self.broker_tls_key is None):
            return "invalid setting BROKER_TLS_CERT/BROKER_TLS_KEY: set both or neither"
        return None

    def describe(self) -> dict[str, object]:
        """Settings for the start-up log: a secret is only said to be set."""
        out: dict[str, object] = {}
        for name, value in self:
            if isinstance(value, SecretStr):
                out[name] = "set"
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        return out
