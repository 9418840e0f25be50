"""A small router in front of aiohttp's: repeated slashes are collapsed before matching.

Macrometa's documented clients send `//_ws/ws/v2/...`; aiohttp's `normalize_path_middleware`
answers that with a redirect, which no WebSocket client follows. So every request lands on one
catch-all aiohttp route and is matched here, after normalisation and authentication.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from broker.auth import PRINCIPAL
from broker.state import STATE

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]
_SLASHES = re.compile(r"/{2,}")
#: In every WebSocket path (Pulsar's /ws/v2, /ws/v3, Macrometa's /_ws/ws/v2).
WS_MARK = "/ws/"


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    public: bool = False


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, methods: str, pattern: str, handler: Handler, *, public: bool = False) -> None:
        """`pattern` is a regex matched against the whole normalised path."""
        self._routes.append(Route(frozenset(methods.split(",")), re.compile(pattern), handler, public))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = _SLASHES.sub("/", request.path)
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        allowed = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if request.method not in route.methods:
                allowed = True
                continue
            # A public route is still authenticated when it can be: its handler may want a role.
            principal = request.app[STATE].auth.authenticate(request, websocket=WS_MARK in path)
            if principal is None and not route.public:
                return unauthorized(request, path)
            request[PRINCIPAL] = principal
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return await route.handler(request, params)
        if allowed:
            return json_response({"error": True, "code": 405, "errorMessage": "method not allowed"}, 405)
        return json_response({"error": True, "code": 404, "errorMessage": f"no such endpoint: {path}"}, 404)


def unauthorized(request: web.Request, path: str) -> web.Response:
    """401 without saying which credential was wrong (and never echoing one): Pulsar's text on
    its paths, Macrometa's JSON on the others."""
    if WS_MARK in path or path.startswith("/admin/"):
        return web.Response(status=401, text="Authentication required")
    return json_response({"error": True, "code": 401, "errorMessage": "unauthorized"}, 401)
