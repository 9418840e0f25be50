"""Producer settings: where the stream is (shared), and how and how often to publish."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from streampair.settings import ServiceSettings, secret_shape, usable_secret_file


def default_producer_id() -> str:
    # The hostname names the pod or container; the suffix keeps a restarted process (whose
    # seq starts again at 1) apart from its predecessor in consumers' duplicate detection.
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class ProducerSettings(ServiceSettings):
    publish_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    producer_id: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default_factory=default_producer_id
    )
    max_in_flight: Annotated[int, Field(ge=1, le=10000)] = 1000
    send_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: When set, POST /messages needs `Authorization: Bearer <token>`; without it the API is open.
    http_auth_token: SecretStr | None = None
    http_auth_token_file: Path | None = None

    @field_validator("http_auth_token", mode="before")
    @classmethod
    def _token_shape(cls, value: object) -> object:
        return secret_shape(value)

    @field_validator("http_auth_token_file")
    @classmethod
    def _token_file(cls, value: Path | None) -> Path | None:
        return usable_secret_file(value)

    @model_validator(mode="after")
    def _one_http_token(self) -> ProducerSettings:
        if self.http_auth_token is not None and self.http_auth_token_file is not None:
            raise ValueError("HTTP_AUTH_TOKEN and HTTP_AUTH_TOKEN_FILE are both set: keep one")
        return self
