"""The producer service's own series."""

from __future__ import annotations

from prometheus_client import Counter

HTTP_UNAUTHORIZED = Counter(
    "streampair_http_unauthorized",
    "POST /messages refused for a missing or wrong bearer token (HTTP_AUTH_TOKEN)",
)
