"""The WebSocket endpoints of Pulsar's API v2: producer, consumer and reader.

Paths `/ws/v2/{role}/persistent/{tenant}/{namespace}/{topic}[/{subscription}]`, also under
`/_ws` (Macrometa GDN's prefix, same frames). The path is taken apart as Pulsar's
`AbstractWebSocketHandler` does: a producer's or reader's topic may contain `/`, a consumer
has exactly one segment after its topic, a domain other than `persistent`/`non-persistent` or a
tenant or namespace name Pulsar cannot parse is a 500. A refused handshake is a plain HTTP status with
Pulsar's text (scripts/pulsar/FINDINGS.md), never a 101. Frames inside a connection are read
as Pulsar reads them (`frames`), including the ones after which Pulsar drops the connection.
"""

from __future__ import annotations

import re

from aiohttp import web

from broker.handshake import Refused, refuse
from broker.routing import Router
from broker.state import STATE
from broker.ws_consumer import multi_topics, open_consumer
from broker.ws_producer import open_producer
from broker.ws_reader import open_reader

WS_PATH = r"(?:/_ws)?/ws/(?P<rest>v2/.*|v3/.*|producer/.*|consumer/.*|reader/.*)"
#: Pulsar's `NamedEntity.checkName`: tenants and namespaces.
_ENTITY = re.compile(r"[-=:.\w]+")
#: Topic and subscription names the embedded broker stores (no whitespace or control characters).
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")


def parse_path(rest: str, trailing_slash: bool = False) -> tuple[str, str, str, str | None]:
    """(role, full topic name, tenant/namespace, subscription) or Refused, as Pulsar parses it."""
    parts = rest.split("/")
    if parts[0] != "v2" or parts[1:2] == [] or parts[1] not in ("producer", "consumer", "reader"):
        raise Refused(404, "Not Found")  # v1 paths are not implemented; nothing else is Pulsar's
    if len(parts) < 6:  # Pulsar's checkArgument(parts.size() >= 8), outside the handler's try
        raise Refused(500, "java.lang.IllegalArgumentException: Invalid topic name format")
    role, domain, tenant, namespace = parts[1], parts[2], parts[3], parts[4]
    if domain not in ("persistent", "non-persistent") or not (
        _ENTITY.fullmatch(tenant) and _ENTITY.fullmatch(namespace)
    ):
        raise Refused(500, "java.lang.IllegalArgumentException")
    rest_parts = parts[5:]
    subscription: str | None = None
    if role == "consumer":
        if len(rest_parts) != 2 or trailing_slash:  # `.../{topic}/{sub}/` has a 10th part
            raise Refused(400, "Invalid query params: Invalid topic name format")
        if not rest_parts[1]:
            raise Refused(400, "Invalid query params: Empty subscription name")
        subscription = rest_parts[1]
        rest_parts = rest_parts[:1]
    local = "/".join(p for p in rest_parts if p)
    if not _NAME.fullmatch(local) or (subscription is not None and not _NAME.fullmatch(subscription)):
        raise Refused(400 if role != "reader" else 500, "Invalid query params: Invalid topic name format")
    return role, f"{domain}://{tenant}/{namespace}/{local}", f"{tenant}/{namespace}", subscription


async def handle(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    rest = params["rest"]
    role = rest.split("/")[1] if rest.startswith("v2/") and rest.count("/") else "consumer"
    try:
        if rest.startswith("v3/consumer"):  # the multi-topic consumer
            topics = multi_topics(request, state.broker)
            parts = rest.split("/")
            if len(parts) < 3:
                raise Refused(400, "Invalid query params: Invalid topic name format")
            if not parts[2] or request.path.endswith("/v3/consumer/"):
                raise Refused(400, "Invalid query params: Empty subscription name")
            return await open_consumer(request, state, topics, parts[2])
        # The router has dropped a trailing '/'; Pulsar counts it as an empty last segment.
        role, name, namespace, subscription = parse_path(rest, request.path.endswith("/"))
        if role == "producer":
            return await open_producer(request, state, name, namespace)
        if role == "consumer":
            assert subscription is not None
            return await open_consumer(request, state, [name], subscription)
        return await open_reader(request, state, name, namespace)
    except Refused as refusal:
        return refuse(state, role, refusal.status, refusal.text)


def register(router: Router) -> None:
    router.add("GET", WS_PATH, handle)
