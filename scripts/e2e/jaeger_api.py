"""Jaeger's query API as `make e2e-docker`'s tracing story reads it (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def flatten(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GET /api/traces/{id}'s answer as {operation name: span}, each span with its `service` and
    `parent` (the span id it is CHILD_OF, or None)."""
    found: dict[str, dict[str, Any]] = {}
    for trace in body.get("data") or []:
        processes = trace.get("processes", {})
        for span in trace.get("spans", []):
            parents = [r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
            found[span["operationName"]] = {
                **span,
                "service": processes.get(span["processID"], {}).get("serviceName"),
                "parent": parents[0] if parents else None,
            }
    return found


def trace_spans(base: str, trace_id: str) -> dict[str, dict[str, Any]]:
    """The spans of one trace by name; empty while Jaeger has none of it (404)."""
    try:
        with urllib.request.urlopen(f"{base}/api/traces/{trace_id}", timeout=10) as response:
            return flatten(json.load(response))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}
        raise
