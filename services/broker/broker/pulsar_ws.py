"""The WebSocket endpoints of Pulsar's API v2: producer, consumer and reader.

Paths `/ws/v2/{role}/persistent/{tenant}/{namespace}/{topic}[/{subscription}]`, also under
`/_ws` (Macrometa GDN's prefix, same frames). A refused handshake is a plain HTTP status with
a Pulsar-like body, never a 101. Inside a connection, bad frames never close it: a producer
gets `send-error:3` (not JSON, no context) or `send-error:7` (bad base64, with context); a
consumer's garbage ack is ignored and counted. A frame over `BROKER_MAX_FRAME_BYTES` closes
the connection with 1009 (message too big), as aiohttp does.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from broker.handshake import NAME, BadParam, refuse
from broker.routing import Router
from broker.state import STATE
from broker.ws_consumer import open_consumer
from broker.ws_producer import open_producer
from broker.ws_reader import open_reader

WS_PATH = (
    r"(?:/_ws)?/ws/v2/(?P<role>producer|consumer|reader)/persistent/"
    r"(?P<tenant>[^/]+)/(?P<namespace>[^/]+)/(?P<topic>[^/]+)(?:/(?P<subscription>[^/]+))?"
)


def topic_name(params: Mapping[str, str]) -> str | None:
    parts = (params["tenant"], params["namespace"], params["topic"])
    if not all(NAME.fullmatch(part) for part in parts):
        return None
    return "persistent://{}/{}/{}".format(*parts)


async def handle(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    role = params["role"]
    name = topic_name(params)
    if name is None:
        return refuse(state, role, 400, f"Failed to create {role}: invalid topic name")
    if role != "consumer" and "subscription" in params:
        return refuse(state, role, 404, "Not Found")
    try:
        if role == "producer":
            return await open_producer(request, state, name)
        if role == "consumer":
            return await open_consumer(request, state, name, params.get("subscription", ""))
        return await open_reader(request, state, name)
    except BadParam as error:
        return refuse(state, role, 400, f"Failed to create {role}: {error}")


def register(router: Router) -> None:
    router.add("GET", WS_PATH, handle)
