"""The services' settings, from the environment, validated once at start.

`ServiceSettings` holds what producer and consumer share (where the stream is, the HTTP
port, logs, timings); each service adds its own fields in a subclass. A wrong value ends the
process with one line naming the variable and what it accepts, status 2, no traceback and
never the value of a secret (`load_settings`). The library itself never reads the
environment: `client_config()` turns these settings into a `ClientConfig`.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streampair.config import BINARY_SCHEMES, URL_SCHEMES, ClientConfig, describe_fields, loopback_admin_url
from streampair.connection import read_secret
from streampair.errors import CredentialUnavailable

Port = Annotated[int, Field(ge=1, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]

#: Exit status for a configuration error (BSD sysexits' EX_USAGE spirit: "you called me wrong").
EXIT_CONFIG = 2


class ServiceSettings(BaseSettings):
    """Where the stream is and how to reach it, plus the HTTP runtime's and the logs' settings."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    stream_backend: Literal["pulsar", "macrometa"] = "pulsar"
    stream_url: str = "ws://localhost:8080"
    #: The admin REST API (stream creation, stats) when STREAM_URL is pulsar:// or pulsar+ssl://.
    stream_admin_url: str | None = None
    stream_name: Name = "streamQuickstart"
    stream_tenant: Name = "public"
    stream_namespace: Name = "default"
    c8_fabric: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")] = "_system"
    c8_api_key: SecretStr | None = None
    c8_api_key_file: Path | None = None
    stream_global: bool = True
    stream_auth_token: SecretStr | None = None
    stream_auth_token_file: Path | None = None
    stream_ca_bundle: Path | None = None
    #: The broker's frame limit (Pulsar's webSocketMaxTextFrameSize, 1 MiB by default).
    stream_max_frame_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    http_port: Port = 8000
    http_host: str = "0.0.0.0"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] | None = None
    heartbeat_seconds: PositiveSeconds = 5.0
    connect_timeout_seconds: PositiveSeconds = 10.0
    reconnect_max_seconds: PositiveSeconds = 10.0
    shutdown_timeout_seconds: PositiveSeconds = 5.0
    #: OpenTelemetry's own variable: tracing is on with `otlp` (or `console`); unset or `none`: off.
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = None

    @field_validator("stream_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value.startswith(URL_SCHEMES):
            raise ValueError("must start with pulsar://, pulsar+ssl://, ws://, wss://, http:// or https://")
        return _plain_url(value)

    @field_validator("stream_admin_url")
    @classmethod
    def _admin_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return _plain_url(value)

    @model_validator(mode="after")
    def _binary_needs(self) -> ServiceSettings:
        if not self.stream_url.startswith(BINARY_SCHEMES):
            return self
        if self.stream_backend == "macrometa":
            raise ValueError(
                "STREAM_BACKEND=macrometa with a pulsar:// STREAM_URL: Macrometa speaks only the "
                "WebSocket API; give its https:// URL"
            )
        if self.stream_admin_url is None and loopback_admin_url(self.stream_url) is None:
            raise ValueError(
                "STREAM_ADMIN_URL is required when STREAM_URL is pulsar:// or pulsar+ssl:// on a "
                "remote host: the broker's admin REST API, such as http://pulsar:8080"
            )
        return self

    @field_validator("stream_name", "stream_tenant", "stream_namespace")
    @classmethod
    def _not_dots(cls, value: str) -> str:
        # "." and ".." pass the character rule but name a path segment, not a stream.
        if set(value) == {"."}:
            raise ValueError("must not be only dots")
        return value

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
        return secret_shape(value)

    @field_validator("c8_api_key_file", "stream_auth_token_file")
    @classmethod
    def _secret_file(cls, value: Path | None) -> Path | None:
        return usable_secret_file(value)

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> ServiceSettings:
        if self.stream_auth_token is not None and self.stream_auth_token_file is not None:
            raise ValueError("STREAM_AUTH_TOKEN and STREAM_AUTH_TOKEN_FILE are both set: keep one")
        if self.c8_api_key is not None and self.c8_api_key_file is not None:
            raise ValueError("C8_API_KEY and C8_API_KEY_FILE are both set: keep one")
        return self

    @field_validator("log_level", "log_format", "otel_traces_exporter", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
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

    def client_config(self) -> ClientConfig:
        """The library's view of these settings."""
        return ClientConfig(
            url=self.stream_url,
            admin_url=self.stream_admin_url,
            stream=self.stream_name,
            backend=self.stream_backend,
            tenant=self.stream_tenant,
            namespace=self.stream_namespace,
            fabric=self.c8_fabric,
            global_stream=self.stream_global,
            api_key=_reveal(self.c8_api_key),
            api_key_file=self.c8_api_key_file,
            auth_token=_reveal(self.stream_auth_token),
            auth_token_file=self.stream_auth_token_file,
            ca_bundle=self.stream_ca_bundle,
            max_frame_bytes=self.stream_max_frame_bytes,
            heartbeat_seconds=self.heartbeat_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            reconnect_max_seconds=self.reconnect_max_seconds,
            shutdown_timeout_seconds=self.shutdown_timeout_seconds,
        )

    def describe(self) -> dict[str, object]:
        """The settings for /status and the start-up log: secrets are only said to be set."""
        return describe_fields(dict(self), frozenset())

    @classmethod
    def misspelt_variables(cls, environ: dict[str, str] | None = None) -> dict[str, str]:
        """Environment variables that look like one of ours but are not: {given: meant}."""
        known = [name.upper() for name in cls.model_fields]
        out: dict[str, str] = {}
        for name in environ if environ is not None else os.environ:
            upper = name.upper()
            if upper in known:
                continue
            match = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
            if match:
                out[name] = match[0]
        return out


def _plain_url(value: str) -> str:
    """A broker URL: a host, a valid port if any, and nothing that belongs elsewhere."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname or not _is_host(parts.hostname):
        raise ValueError("must name a host, as in pulsar://localhost:6650 or ws://localhost:8080")
    if parts.username or parts.password or parts.query or parts.fragment:
        # Credentials here would end up in logs and /status; they have settings of their own.
        raise ValueError("must not carry credentials or a query (use C8_API_KEY or STREAM_AUTH_TOKEN)")
    return value.rstrip("/")


def secret_shape(value: object) -> object:
    """Surrounding white space (a trailing newline from a secret file) is dropped; empty means
    unset; anything else with spaces or control characters would corrupt a header."""
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


def usable_secret_file(value: Path | None) -> Path | None:
    """A secret file is read again at each use; it must be usable at start so a typo shows at once."""
    if value is not None:
        try:
            read_secret(value, "")
        except CredentialUnavailable:
            raise ValueError("must be a readable file holding one secret (no spaces)") from None
    return value


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


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
    if not first["loc"]:  # a rule across settings: its message names them
        return "invalid settings: " + first["msg"].removeprefix("Value error, ")
    field_name = str(first["loc"][0])
    variable = field_name.upper()
    info = cls.model_fields.get(field_name)
    # A URL may carry a password by mistake: never echo it either.
    secret = info is not None and (
        "SecretStr" in repr(info.annotation) or field_name in ("stream_url", "stream_admin_url")
    )
    reason = first["msg"]
    if first["type"] == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        reason = f"expected one of {expected}"
    elif first["type"] == "string_pattern_mismatch":
        dots = "." in str(first.get("ctx", {}).get("pattern", ""))
        reason = "may hold only letters, digits, '_' and '-'" + (" and '.'" if dots else "")
    reason = reason.removeprefix("Value error, ")
    got = "" if secret else f" (got {first.get('input')!r})"
    return f"invalid setting {variable}: {reason}{got}"


def load_settings(cls: type[S], service: str, argv: list[str] | None = None) -> S:
    """Build `cls` from the environment or exit with status 2 and one line on stderr.

    The services take no arguments: `--help` prints the settings they read (exit 0), anything
    else prints usage and exits 2, so a mistyped flag never starts a service by accident.
    """
    _command_line(cls, service, sys.argv[1:] if argv is None else argv)
    try:
        return cls()
    except ValidationError as error:
        print(f"{service}: {format_validation_error(cls, error)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except ValueError as error:  # pydantic-settings raises this for unparsable env values
        line = " ".join(str(error).split())[:300]
        print(f"{service}: invalid setting: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _command_line(cls: type[BaseSettings], service: str, argv: list[str]) -> None:
    lines = [f"  {name.upper():<28} default: {_default(info)}" for name, info in cls.model_fields.items()]
    parser = argparse.ArgumentParser(
        prog=service,
        description=f"{service}: configured by environment variables only.",
        epilog="settings (environment variables):\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)


def _default(info: object) -> str:
    default = getattr(info, "default", None)
    if getattr(info, "default_factory", None) is not None:
        return "computed at start"
    if default is None or type(default).__name__ == "PydanticUndefinedType":
        return "unset"
    return str(default)
