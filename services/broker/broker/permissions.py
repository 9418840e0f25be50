"""What each role may do, as Pulsar 4.0.7 decides it (scripts/pulsar/FINDINGS.md,
"Authentication and authorization"), when roles are on (BROKER_TOKEN_SECRET_KEY).

Grants are kept per namespace (`tenant/ns`) and per topic (its full name), durably, and set through
Pulsar's admin paths: `POST|DELETE /admin/v2/namespaces/{t}/{ns}/permissions/{role}` with a JSON
array such as `["produce"]`, `GET .../permissions`, and the same under
`/admin/v2/persistent/{t}/{ns}/{topic}/permissions` (the topic must exist). A superuser may do
anything; another role may produce or consume where granted, read the stats of a topic it may
produce to or consume from, list or delete subscriptions where it may consume. Everything else is
for superusers. Pulsar answers a failed *topic* or tenant check with 401 and a failed *namespace*
check with 403; so does this.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from broker.auth import ANONYMOUS, PRINCIPAL, Principal
from broker.grants import ACTIONS
from broker.handshake import Refused
from broker.routing import Handler, json_response
from broker.state import STATE


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def authorize(request: web.Request, topics: list[str], action: str) -> None:
    """A WebSocket handshake's check (after authentication): 403 `Not authorized` as Pulsar."""
    permissions = request.app[STATE].broker.permissions
    principal = principal_of(request)
    if not all(permissions.allows(principal, topic, action) for topic in topics):
        raise Refused(403, "Not authorized")


# -- admin calls --------------------------------------------------------------------------------

Check = Callable[[web.Request, Principal, dict[str, str]], web.Response | None]


def _reason(status: int, reason: str) -> web.Response:
    return json_response({"reason": reason}, status)


def topic_name(params: dict[str, str]) -> str:
    return "{domain}://{tenant}/{namespace}/{topic}".format(**{"domain": "persistent", **params})


def _topic_operation(operation: str, action: str | None) -> Check:
    """Pulsar's validateTopicOperation: 401 when refused. `action` None: superusers only."""

    def check(request: web.Request, principal: Principal, params: dict[str, str]) -> web.Response | None:
        topic = topic_name(params)
        permissions = request.app[STATE].broker.permissions
        if principal.superuser:
            return None
        allowed = (
            any(permissions.allows(principal, topic, a) for a in ("produce", "consume"))
            if action == "lookup"
            else action is not None and permissions.allows(principal, topic, action)
        )
        if allowed:
            return None
        return _reason(
            401, f"Unauthorized to validateTopicOperation for operation [{operation}] on topic [{topic}]"
        )

    return check


def _namespace_operation(operation: str, policy: bool = False) -> Check:
    """Pulsar's validateNamespaceOperation (and ...PolicyOperation): 403 when refused."""

    def check(request: web.Request, principal: Principal, params: dict[str, str]) -> web.Response | None:
        namespace = f"{params['tenant']}/{params['namespace']}"
        permissions = request.app[STATE].broker.permissions
        if principal.superuser:
            return None
        if operation == "GET_TOPICS" and permissions.allows_in_namespace(principal, namespace):
            return None
        if policy:
            text = (
                f"validateNamespacePolicyOperation for operation [{operation}] on namespace [{namespace}]"
                " on policy [ALL]"
            )
        else:
            text = f"validateNamespaceOperation for operation [{operation}] on namespace [{namespace}]"
        return _reason(403, f"Unauthorized to {text}")

    return check


def _tenant_operation(operation: str, superuser_too: bool) -> Check:
    """Pulsar's validateTenantOperation / validateBothTenantOperationAndSuperUser: 401."""
    check_name = "validateBothTenantOperationAndSuperUser" if superuser_too else "validateTenantOperation"

    def check(request: web.Request, principal: Principal, params: dict[str, str]) -> web.Response | None:
        if principal.superuser:
            return None
        where = f" on tenant [{params['tenant']}]" if "tenant" in params else ""
        return _reason(
            401,
            f"Unauthorized to {check_name} for originalPrincipal [null] and clientAppId [{principal.name}] "
            f"about operation [{operation}]{where}",
        )

    return check


def _tenant_admin(request: web.Request, principal: Principal, params: dict[str, str]) -> web.Response | None:
    """Topic-level permissions: Pulsar's validateAdminAccessForTenant (401)."""
    return (
        None
        if principal.superuser
        else _reason(401, "Don't have permission to administrate resources on this tenant")
    )


def _health(request: web.Request, principal: Principal, params: dict[str, str]) -> web.Response | None:
    if principal.superuser:
        return None
    return _reason(
        401,
        "Unauthorized to validateBothSuperuserAndBrokerOperation for originalPrincipal [null] and "
        f"clientAppId [{principal.name}] about operation [HEALTH_CHECK]",
    )


CHECKS: dict[str, Check] = {
    "health": _health,
    "tenants": _tenant_operation("LIST_TENANTS", superuser_too=True),
    "tenant": _tenant_operation("GET_TENANT", superuser_too=True),
    "namespaces": _tenant_operation("LIST_NAMESPACES", superuser_too=False),
    "namespace_change": _tenant_operation("CREATE_NAMESPACE", superuser_too=False),
    "namespace_read": _namespace_operation("READ", policy=True),
    "namespace_topics": _namespace_operation("GET_TOPICS"),
    "namespace_permissions": _namespace_operation("GRANT_PERMISSION"),
    "create_topic": _namespace_operation("CREATE_TOPIC"),
    "delete_topic": _namespace_operation("DELETE_TOPIC"),
    "stats": _topic_operation("GET_STATS", "lookup"),
    "subscriptions": _topic_operation("GET_SUBSCRIPTIONS", "consume"),
    "unsubscribe": _topic_operation("UNSUBSCRIBE", "consume"),
    "terminate": _topic_operation("TERMINATE", None),
    "topic_permissions": _tenant_admin,
}


def guarded(handler: Handler, check: str | Callable[[web.Request], str]) -> Handler:
    """`handler` behind the check named `check` (or chosen per request, by method)."""

    async def run(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        # Unauthenticated on a public route: with roles on, Pulsar's 401; without, open (probes).
        if request.get(PRINCIPAL) is None and request.app[STATE].auth.roles:
            return web.Response(status=401, text="Authentication required")
        name = check if isinstance(check, str) else check(request)
        refusal = CHECKS[name](request, principal_of(request), params)
        return refusal if refusal is not None else await handler(request, params)

    return run


# -- the permission endpoints -------------------------------------------------------------------


async def _actions(request: web.Request) -> tuple[str | None, ...] | web.Response:
    if request.content_type != "application/json":
        return web.Response(status=415, text="Unsupported Media Type")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.Response(status=400, text="Unrecognized token: not JSON")
    if not isinstance(body, list) or not all(isinstance(a, str) for a in body):
        return web.Response(
            status=400, text="Cannot deserialize value of type `java.util.HashSet<AuthAction>`"
        )
    return tuple(dict.fromkeys(a if a in ACTIONS else None for a in body))


async def namespace_permissions(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    broker = request.app[STATE].broker
    tenant, namespace = params["tenant"], params["namespace"]
    if not broker.namespace_exists(tenant, namespace):
        return _reason(404, "Topic's namespace does not exist")
    return await _permissions(request, f"{tenant}/{namespace}", params.get("role"))


async def topic_permissions(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    broker = request.app[STATE].broker
    name = topic_name(params)
    if not broker.namespace_exists(params["tenant"], params["namespace"]):
        return _reason(404, "Namespace does not exist")
    if broker.topic(name) is None:  # Pulsar grants only on a topic that exists
        return _reason(404, f"Topic {name} not found")
    if params.get("role") is None:  # GET lists the namespace's grants and the topic's together
        namespace = f"{params['tenant']}/{params['namespace']}"
        merged = broker.permissions.of(namespace)
        for role, actions in broker.permissions.of(name).items():  # a role's actions are united
            merged[role] = sorted(
                set(merged.get(role, [])) | set(actions), key=lambda a: (a is not None, a or "")
            )
        return json_response(merged)
    return await _permissions(request, name, params["role"])


async def _permissions(request: web.Request, resource: str, role: str | None) -> web.StreamResponse:
    broker = request.app[STATE].broker
    if role is None:
        return json_response(broker.permissions.of(resource))
    if request.method == "DELETE":
        broker.set_grant(resource, role, None)
        return web.Response(status=204)
    actions = await _actions(request)
    if isinstance(actions, web.Response):
        return actions
    broker.set_grant(resource, role, actions)
    return web.Response(status=204)


def register(router_add: Callable[[str, str, Handler], None], name: str, topic_path: str) -> None:
    """The permission endpoints, superusers only (`router_add` is Router.add)."""
    namespace = rf"/admin/v2/namespaces/(?P<tenant>{name})/(?P<namespace>{name})/permissions"
    router_add("GET", namespace, guarded(namespace_permissions, "namespace_permissions"))
    router_add(
        "POST,DELETE",
        namespace + rf"/(?P<role>{name})",
        guarded(namespace_permissions, "namespace_permissions"),
    )
    router_add("GET", topic_path + "/permissions", guarded(topic_permissions, "topic_permissions"))
    router_add(
        "POST,DELETE",
        topic_path + rf"/permissions/(?P<role>{name})",
        guarded(topic_permissions, "topic_permissions"),
    )
