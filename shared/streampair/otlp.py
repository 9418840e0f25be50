"""OTLP/HTTP span export with a faster encoder for the spans streampair makes.

The SDK's exporter builds a protobuf object per span, per attribute and per value, and hashes the
resource (a JSON dump) per span: 20 µs of the GIL per `send` span, measured (docs/tracing.md),
more than creating the span. At tens of thousands of messages a second that is the exporter thread
taking the event loop's CPU. This encoder writes the same OTLP bytes directly: the resource, the
scope and every repeated attribute (stream, topic, subscription) are encoded once and reused, so a
span costs its ids, times and the few values that change: 6 µs.

It covers what the spans here carry: string, bool, int and float attributes, no events, no links.
A batch holding anything else (an exception event, say) is encoded by the SDK's own encoder, so the
bytes are always complete. `test_otlp_encoding` checks that both encoders produce the same message.
Everything else (endpoint, headers, TLS, compression, timeout, retries: the `OTEL_EXPORTER_OTLP_*`
variables) is the SDK's exporter, unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",  # field 6, varint
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# Span.flags (field 16, fixed32): "has is_remote", plus "is remote" when the parent came from elsewhere
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)
_CACHE_LIMIT = 4096
# Values unique to one span: caching them would only evict the ones that repeat.
_UNIQUE_KEYS = frozenset({"messaging.message.id"})


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


class Unsupported(Exception):
    """Something this encoder does not write: the SDK's encoder takes the batch."""


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    raise Unsupported(type(value).__name__)


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message's body."""
    return _field(1, key.encode()) + _field(2, _any_value(value))


def _attribute_list(number: int, attributes: Any) -> bytes:
    return b"".join(_field(number, _key_value(k, v)) for k, v in (attributes or {}).items())


class SpanEncoder:
    """ExportTraceServiceRequest bytes for a batch of SDK spans, as the SDK's encoder writes them."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[str, type, Any], bytes] = {}
        self._names: dict[str, bytes] = {}
        # by identity: a resource hashes by a JSON dump of its attributes; the objects are kept alive
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes | None:
        """The request's bytes, or None when a span holds what only the SDK's encoder writes."""
        try:
            return self._encode(spans)
        except Exception:  # Unsupported, or a span of a shape not foreseen: the SDK's encoder copes
            return None

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope
            scopes = groups.setdefault(id(resource), (resource, {}))[1]
            scopes.setdefault(id(scope), (scope, []))[1].append(self._span(span))
        out = []
        for resource, scopes in groups.values():
            body = [self._resource(resource)]
            for scope, encoded in scopes.values():
                scope_spans = self._scope(scope) + b"".join(encoded)
                schema = scope.schema_url if scope else None
                if schema:
                    scope_spans += _field(3, schema.encode())
                body.append(_field(2, scope_spans))
            if resource.schema_url:
                body.append(_field(3, resource.schema_url.encode()))
            out.append(_field(1, b"".join(body)))
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        if span.events or span.links or span.dropped_events or span.dropped_links:
            raise Unsupported("events or links")
        context = span.context
        if context is None:
            raise Unsupported("no span context")
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            parts.append(_field(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode()))
        parent = span.parent
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        name = self._names.get(span.name)
        if name is None:
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            name = self._names[span.name] = _field(5, span.name.encode())
        parts.append(name)
        parts.append(_KIND[span.kind])
        parts.append(b"\x39" + struct.pack("<Q", span.start_time or 0))
        parts.append(b"\x41" + struct.pack("<Q", span.end_time or 0))
        cache = self._attributes
        for key, value in (span.attributes or {}).items():
            cache_key = (key, type(value), value)
            try:
                encoded = cache[cache_key]
            except KeyError:
                encoded = _field(9, _key_value(key, value))
                if key not in _UNIQUE_KEYS:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[cache_key] = encoded
            except TypeError as error:  # an unhashable value (a sequence): the SDK's encoder
                raise Unsupported("unhashable attribute") from error
            parts.append(encoded)
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        status = span.status
        status_body = b""
        if status.description:
            status_body += _field(2, status.description.encode())
        if status.status_code.value:
            status_body += b"\x18" + _varint(status.status_code.value)
        parts.append(_field(15, status_body))
        parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return _field(2, b"".join(parts))

    def _resource(self, resource: Any) -> bytes:
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            if len(self._resources) >= 64:  # one provider has one resource: this only bounds odd uses
                self._resources.clear()
            cached = self._resources[id(resource)] = (
                resource,
                _field(1, _attribute_list(1, resource.attributes)),
            )
        return cached[1]

    def _scope(self, scope: Any) -> bytes:
        cached = self._scopes.get(id(scope))
        if cached is None or cached[0] is not scope:
            if len(self._scopes) >= 64:
                self._scopes.clear()
            body = b""
            if scope is not None:
                if scope.name:
                    body += _field(1, scope.name.encode())
                if scope.version:
                    body += _field(2, scope.version.encode())
                body += _attribute_list(3, scope.attributes)
            cached = self._scopes[id(scope)] = (scope, _field(1, body))
        return cached[1]


class StreampairSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, sending what `SpanEncoder` wrote.

    Falls back to the SDK's own `export` for a batch the encoder leaves to it, and wholly where the
    installed exporter does not have the internals used here (a different SDK version)."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = SpanEncoder()
        self._fast = all(hasattr(self, name) for name in ("_client", "_shutdown", "_max_request_size"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = self._encoder.encode(spans) if self._fast and not self._shutdown else None
        too_large = data is not None and 0 < self._max_request_size < len(data)
        if data is None or too_large:
            return super().export(spans)  # it logs and counts refusals and failures its own way
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
