"""Macrometa GDN's stream REST API and one-time passwords, on the Pulsar port.

A GDN stream `x` of fabric `f` (tenant `t`, default `_mm` or the API key's tenant) is the
Pulsar topic `persistent://t/c8global.f/c8globals.x` (local streams: `c8local.` /
`c8locals.`), so the Pulsar and Macrometa dialects see the same topic. GDN's WebSocket path
`/_ws/ws/v2/...` is served by `pulsar_ws` with that naming. Answers use GDN's envelope
`{"error": false, "code": 200, "result": ...}`.
"""

from __future__ import annotations

from aiohttp import web
from streampair.protocol import tenant_from_api_key

from broker.admin import close_all, delete_topic, in_use, outboxes_of, topic_stats
from broker.permissions import principal_of
from broker.routing import Router, json_response
from broker.state import STATE
from broker.topics import Topic

NAME = r"[^/]+"
STREAMS = rf"(?:/_tenant/(?P<tenant>{NAME}))?/_fabric/(?P<fabric>{NAME})/_api/streams"


def ok(result: object, code: int = 200, extra: dict[str, object] | None = None) -> web.Response:
    return json_response({"error": False, "code": code, "result": result, **(extra or {})}, code)


def fail(code: int, message: str) -> web.Response:
    return json_response({"error": True, "code": code, "errorNum": code, "errorMessage": message}, code)


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("true", "1", "yes")


def _tenant(request: web.Request, params: dict[str, str]) -> str:
    if params.get("tenant"):
        return params["tenant"]
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return tenant_from_api_key(value.strip() if scheme.lower() == "apikey" else None)


def stream_topic(tenant: str, fabric: str, stream: str, global_: bool | None) -> tuple[str, str]:
    """(Pulsar topic name, GDN stream id) of a stream given bare or as `c8globals.x`/`c8locals.x`."""
    if stream.startswith("c8globals."):
        global_, stream = True, stream.removeprefix("c8globals.")
    elif stream.startswith("c8locals."):
        global_, stream = False, stream.removeprefix("c8locals.")
    scope = "global" if global_ is None or global_ else "local"
    stream_id = f"c8{scope}s.{stream}"
    return f"persistent://{tenant}/c8{scope}.{fabric}/{stream_id}", stream_id


def _fabric_topics(request: web.Request, params: dict[str, str], global_: bool | None) -> list[Topic]:
    tenant = _tenant(request, params)
    fabric = params["fabric"]
    prefixes = []
    if global_ is None or global_:
        prefixes.append(f"persistent://{tenant}/c8global.{fabric}/c8globals.")
    if global_ is None or not global_:
        prefixes.append(f"persistent://{tenant}/c8local.{fabric}/c8locals.")
    broker = request.app[STATE].broker
    return [topic for name, topic in sorted(broker.topics.items()) if name.startswith(tuple(prefixes))]


async def list_streams(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    tenant = _tenant(request, params)
    items = []
    for topic in _fabric_topics(request, params, _flag(request.query.get("global"))):
        stream_id = topic.name.rsplit("/", 1)[1]
        items.append(
            {
                "topic": stream_id,
                "local": stream_id.startswith("c8locals."),
                "db": params["fabric"],
                "tenant": tenant,
                "type": "persistent",
            }
        )
    return ok(items)


async def stream(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    name, stream_id = stream_topic(
        _tenant(request, params), params["fabric"], params["stream"], _flag(request.query.get("global"))
    )
    topic = state.broker.topic(name)
    if request.method == "POST":
        if topic is not None:
            return fail(409, f"stream {stream_id} already exists")
        state.broker.create_topic(name)
        # GDN wraps it in `result`; some clients read `stream-id` at the top level.
        return ok({"stream-id": stream_id}, extra={"stream-id": stream_id})
    if topic is None:
        return fail(404, f"stream {stream_id} not found")
    if in_use(topic) and _flag(request.query.get("force")) is not True:
        return fail(412, f"stream {stream_id} has active producers or consumers")
    await delete_topic(state, topic)
    return ok(True)


async def stream_info(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, stream_id = stream_topic(
        _tenant(request, params), params["fabric"], params["stream"], _flag(request.query.get("global"))
    )
    topic = request.app[STATE].broker.topic(name)
    if topic is None:
        return fail(404, f"stream {stream_id} not found")
    what = params["what"]
    if what == "stats":
        return ok(topic_stats(topic))
    if what == "subscriptions":
        return ok(sorted(topic.subscriptions))
    backlog = {sub.name: sub.backlog() for sub in topic.subscriptions.values()}
    return ok(
        {
            "topicName": name,
            "totalMessages": len(topic.entries),
            "messageBacklog": max(backlog.values(), default=0),
            "subscriptions": backlog,
        }
    )


async def delete_subscription(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    name, stream_id = stream_topic(
        _tenant(request, params), params["fabric"], params["stream"], _flag(request.query.get("global"))
    )
    topic = state.broker.topic(name)
    sub = topic.subscriptions.get(params["subscription"]) if topic is not None else None
    if topic is None or sub is None:
        return fail(404, f"subscription {params['subscription']} of {stream_id} not found")
    if sub.consumers:
        return fail(412, "subscription has active consumers")
    outboxes = outboxes_of(topic, sub)
    state.broker.delete_subscription(sub)
    await close_all(outboxes)
    return ok(True)


async def clear_backlog(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    only = params.get("subscription")
    for topic in _fabric_topics(request, params, None):
        for sub in list(topic.subscriptions.values()):
            if only is None or sub.name == only:
                sub.clear_backlog()
    return ok(True)


async def issue_otp(request: web.Request, _: dict[str, str]) -> web.StreamResponse:
    # The OTP stands for whoever asked for it: never more than that caller may do.
    otp = request.app[STATE].auth.issue_otp(principal_of(request))
    if otp is None:
        return fail(429, "too many outstanding one-time passwords")
    return json_response({"otp": otp})


def register(router: Router) -> None:
    router.add("POST", rf"(?:/_tenant/{NAME})?/apid/otp", issue_otp)
    router.add("GET", STREAMS, list_streams)
    router.add("POST", STREAMS + r"/clearbacklog", clear_backlog)
    router.add("POST", STREAMS + rf"/clearbacklog/(?P<subscription>{NAME})", clear_backlog)
    router.add("POST,DELETE", STREAMS + rf"/(?P<stream>{NAME})", stream)
    router.add("GET", STREAMS + rf"/(?P<stream>{NAME})/(?P<what>stats|backlog|subscriptions)", stream_info)
    router.add(
        "DELETE",
        STREAMS + rf"/(?P<stream>{NAME})/subscriptions/(?P<subscription>{NAME})",
        delete_subscription,
    )
