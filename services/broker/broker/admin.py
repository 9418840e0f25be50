"""The subset of Pulsar's admin REST API that tools and tests use.

`PUT|GET|DELETE /admin/v2/persistent/{tenant}/{ns}/{topic}`, `GET .../{topic}/stats`,
`GET .../{topic}/subscriptions`, `DELETE .../{topic}/subscription/{sub}`,
`GET /admin/v2/persistent/{tenant}/{ns}` (topic list) and `GET /admin/v2/brokers/health`.
Errors are Pulsar's `{"reason": "..."}`. The stats helpers are shared with the Macrometa API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, web

from broker import permissions
from broker.outbox import Outbox
from broker.permissions import guarded
from broker.routing import Router, json_response
from broker.state import STATE, BrokerState
from broker.subscriptions import Subscription
from broker.topics import Topic

NAME = r"[^/]+"
TOPIC_PATH = (
    r"/admin/v2/(?P<domain>persistent|non-persistent)"
    rf"/(?P<tenant>{NAME})/(?P<namespace>{NAME})/(?P<topic>{NAME})"
)


def topic_stats(topic: Topic) -> dict[str, Any]:
    """A Pulsar `TopicStats`-shaped summary (counts, no rates)."""
    subs: dict[str, Any] = {}
    for sub in topic.subscriptions.values():
        single_active = sub.type in ("Exclusive", "Failover")
        subs[sub.name] = {
            "type": sub.type,
            **({"activeConsumerName": sub.active.name} if single_active and sub.active is not None else {}),
            "msgBacklog": sub.backlog(),
            "unackedMessages": len(sub.pending),
            "msgOutCounter": sub.msg_out,
            "isDurable": sub.durable,
            "consumers": [
                {
                    "consumerName": c.name,
                    "priorityLevel": c.priority,
                    "availablePermits": max(c.capacity(), 0),
                    "unackedMessages": len(c.unacked),
                    "address": c.address,
                    "connectedSince": c.connected_ms,
                    "isActive": sub.active is c if single_active else True,
                }
                for c in sub.consumers
            ],
        }
    return {
        "msgInCounter": sum(p.msg_in for p in topic.producers.values()),
        "lastSequence": topic.last_seq,
        "retainedMessages": len(topic.entries),
        "publishers": [
            {
                "producerName": p.name,
                "producerId": p.id,
                "address": p.address,
                "connectedSince": p.connected_ms,
            }
            for p in topic.producers.values()
        ],
        "subscriptions": subs,
        "readers": [{"readerName": r.name, "address": r.address} for r in topic.readers],
    }


def outboxes_of(topic: Topic, subscription: Subscription | None = None) -> list[Outbox]:
    """The connections of a topic (or of one subscription), collected before deleting it."""
    if subscription is not None:
        return [c.outbox for c in subscription.consumers]
    out = [c.outbox for sub in topic.subscriptions.values() for c in sub.consumers]
    out += [p.outbox for p in topic.producers.values()]
    out += [r.outbox for r in topic.readers]
    return out


async def close_all(outboxes: list[Outbox]) -> None:
    for outbox in outboxes:
        with contextlib.suppress(Exception):
            await outbox.ws.close(code=WSCloseCode.OK, message=b"topic or subscription deleted")


def in_use(topic: Topic) -> bool:
    return bool(topic.producers or topic.readers or topic.connected_consumers())


async def delete_topic(state: BrokerState, topic: Topic) -> None:
    outboxes = outboxes_of(topic)
    state.broker.delete_topic(topic)
    await close_all(outboxes)


def _reason(status: int, reason: str) -> web.Response:
    return json_response({"reason": reason}, status)


def _full(params: dict[str, str]) -> str:
    return "{domain}://{tenant}/{namespace}/{topic}".format(**{"domain": "persistent", **params})


def _namespace_missing(request: web.Request, params: dict[str, str]) -> bool:
    return not request.app[STATE].broker.namespace_exists(params["tenant"], params["namespace"])


async def topic_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    broker = state.broker
    if _namespace_missing(request, params):
        return _reason(404, "Namespace not found")
    name = _full(params)
    topic = broker.topic(name)
    if request.method == "PUT":
        if request.content_type != "application/json":  # Pulsar's JAX-RS endpoint says the same
            return _reason(415, "Unsupported Media Type: use Content-Type: application/json")
        if topic is not None:
            return _reason(409, "This topic already exists")
        broker.create_topic(name)
        return web.Response(status=204)
    if topic is None:
        return _reason(404, "Topic not found")
    if request.method == "GET":
        return json_response(topic_stats(topic))
    if in_use(topic) and request.query.get("force", "false").lower() != "true":
        return _reason(412, "Topic has active producers/subscriptions")
    await delete_topic(state, topic)
    return web.Response(status=204)


async def stats_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    if _namespace_missing(request, params):
        return _reason(404, "Namespace not found")
    topic = request.app[STATE].broker.topic(_full(params))
    if topic is None:
        return _reason(404, "Topic not found")
    return json_response(topic_stats(topic))


async def subscriptions_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    topic = request.app[STATE].broker.topic(_full(params))
    if topic is None:
        return _reason(404, "Topic not found")
    return json_response(sorted(topic.subscriptions))


async def delete_subscription_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    state = request.app[STATE]
    topic = state.broker.topic(_full(params))
    sub = topic.subscriptions.get(params["subscription"]) if topic is not None else None
    if topic is None or sub is None:
        return _reason(404, "Subscription not found")
    if sub.consumers and request.query.get("force", "false").lower() != "true":
        return _reason(412, "Subscription has active connected consumers")
    outboxes = outboxes_of(topic, sub)
    state.broker.delete_subscription(sub)
    await close_all(outboxes)
    return web.Response(status=204)


async def terminate_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """Pulsar's `terminate`: answers the id of the last message as a `MessageIdImpl`."""
    state = request.app[STATE]
    if _namespace_missing(request, params):
        return _reason(404, "Namespace not found")
    name = _full(params)
    topic = state.broker.topic(name)
    if topic is None:
        return _reason(404, f"Topic {name} not found")
    state.broker.terminate(topic)
    for sub in topic.subscriptions.values():
        state.broker.schedule_dispatch(sub)
    last = {
        "ledgerId": topic.id,
        "entryId": topic.last_seq,
        "partitionIndex": -1,
        "batchIndex": -1,
        "batchSize": 0,
    }
    return json_response(last)


async def namespace_topics(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    if _namespace_missing(request, params):
        return _reason(404, "Namespace does not exist")
    prefix = "persistent://{tenant}/{namespace}/".format(**params)
    names = sorted(name for name in request.app[STATE].broker.topics if name.startswith(prefix))
    return json_response(names)


async def health(request: web.Request, _: dict[str, str]) -> web.StreamResponse:
    return web.Response(text="ok")


async def tenants_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """`GET /admin/v2/tenants[/{t}]`, `PUT` (a JSON body with `allowedClusters`), `DELETE`."""
    broker = request.app[STATE].broker
    tenant = params.get("tenant")
    if tenant is None:
        return json_response(sorted(broker.tenants))
    if request.method == "PUT":
        if request.content_type != "application/json":
            return web.Response(status=415)
        try:
            body = await request.json()
        except ValueError:
            return _reason(400, "Invalid JSON body")
        if not isinstance(body, dict) or body.get("allowedClusters") is None:
            return _reason(412, "Clusters cannot be null")
        broker.set_name("tenant", tenant, True)
        return web.Response(status=204)
    if tenant not in broker.tenants:
        return _reason(404, "Tenant does not exist")
    if request.method == "GET":
        return json_response({"adminRoles": [], "allowedClusters": ["standalone"]})
    if any(ns.startswith(tenant + "/") for ns in broker.namespaces):
        return _reason(409, "The tenant still has active namespaces")
    broker.set_name("tenant", tenant, False)
    return web.Response(status=204)


async def namespaces_endpoint(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """`GET /admin/v2/namespaces/{t}`, `PUT|DELETE /admin/v2/namespaces/{t}/{ns}`."""
    broker = request.app[STATE].broker
    tenant, namespace = params["tenant"], params.get("namespace")
    if tenant not in broker.tenants:
        return _reason(404, "Tenant does not exist")
    if namespace is None:
        return json_response(sorted(ns for ns in broker.namespaces if ns.startswith(tenant + "/")))
    full = f"{tenant}/{namespace}"
    if request.method == "PUT":
        if request.content_type != "application/json":
            return web.Response(status=415)
        if full in broker.namespaces:
            return _reason(409, "Namespace already exists")
        broker.set_name("namespace", full, True)
        return web.Response(status=204)
    if full not in broker.namespaces:
        return _reason(404, f"Namespace {full} does not exist.")
    if request.method == "GET":
        return json_response({})
    if any(name.startswith(f"persistent://{full}/") for name in broker.topics):
        return _reason(409, "Cannot delete non empty namespace")
    broker.set_name("namespace", full, False)
    return web.Response(status=204)


def _by_method(read: str, write: str, delete: str | None = None) -> Callable[[web.Request], str]:
    """The permission check of an endpoint whose methods Pulsar checks differently."""
    return lambda request: {"GET": read, "DELETE": delete or write}.get(request.method, write)


def register(router: Router) -> None:
    """Every endpoint behind the check Pulsar makes for it (broker.permissions): with roles off
    (no BROKER_TOKEN_SECRET_KEY) every authenticated caller passes them."""
    add = router.add
    add("GET", r"/admin/v2/tenants", guarded(tenants_endpoint, "tenants"))
    add("GET,PUT,DELETE", rf"/admin/v2/tenants/(?P<tenant>{NAME})", guarded(tenants_endpoint, "tenant"))
    add("GET", rf"/admin/v2/namespaces/(?P<tenant>{NAME})", guarded(namespaces_endpoint, "namespaces"))
    add(
        "GET,PUT,DELETE",
        rf"/admin/v2/namespaces/(?P<tenant>{NAME})/(?P<namespace>{NAME})",
        guarded(namespaces_endpoint, _by_method("namespace_read", "namespace_change")),
    )
    permissions.register(add, NAME, TOPIC_PATH)
    add("POST", TOPIC_PATH + r"/terminate", guarded(terminate_endpoint, "terminate"))
    # public: the route is open without BROKER_TOKEN_SECRET_KEY (probes), a superuser's with it
    add("GET", r"/admin/v2/brokers/health", guarded(health, "health"), public=True)
    add(
        "GET",
        rf"/admin/v2/persistent/(?P<tenant>{NAME})/(?P<namespace>{NAME})",
        guarded(namespace_topics, "namespace_topics"),
    )
    add(
        "PUT,GET,DELETE",
        TOPIC_PATH,
        guarded(topic_endpoint, _by_method("stats", "create_topic", "delete_topic")),
    )
    add("GET", TOPIC_PATH + r"/stats", guarded(stats_endpoint, "stats"))
    add("GET", TOPIC_PATH + r"/subscriptions", guarded(subscriptions_endpoint, "subscriptions"))
    add(
        "DELETE",
        TOPIC_PATH + rf"/subscription/(?P<subscription>{NAME})",
        guarded(delete_subscription_endpoint, "unsubscribe"),
    )
