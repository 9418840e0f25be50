"""What the producer, consumer and reader endpoints share: query parameters parsed as Pulsar
parses them, refusals, and the life of a WebSocket (open, count, close)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping

from aiohttp import web
from streampair.logs import get_logger

from broker.outbox import Outbox
from broker.state import BrokerState

log = get_logger("broker.ws")

#: A tenant, namespace, topic or subscription name as the embedded broker accepts it.
NAME = re.compile(r"[^\s/\x00-\x1f\x7f]{1,255}")


class BadParam(ValueError):
    """A query parameter Pulsar would refuse with 400."""


def int_param(query: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31 - 1) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"Invalid {name}: not an integer") from None
    if not low <= value <= high:
        raise BadParam(f"Invalid {name}: must be between {low} and {high}")
    return value


def bool_param(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise BadParam(f"Invalid {name}: expected true or false")


def refuse(state: BrokerState, role: str, status: int, text: str) -> web.Response:
    state.broker.stats.rejected(role, status)
    # A standby retries every second: its 409s are counted in metrics, not logged each time.
    (log.debug if status == 409 else log.info)("handshake_refused", role=role, status=status, reason=text)
    return web.Response(status=status, text=text)


def new_socket(state: BrokerState) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        max_msg_size=state.settings.broker_max_frame_bytes,
        autoping=True,
        heartbeat=state.settings.broker_heartbeat_seconds,
    )


async def serve(request: web.Request, state: BrokerState, ws: web.WebSocketResponse, role: str) -> bool:
    try:
        await ws.prepare(request)
    except (ConnectionError, RuntimeError):
        return False
    state.sockets.add(ws)
    state.broker.stats.connections[role] += 1
    return True


async def finish(state: BrokerState, ws: web.WebSocketResponse, outbox: Outbox, role: str) -> None:
    state.sockets.discard(ws)
    state.broker.stats.connections[role] -= 1
    await outbox.close()
    if not ws.closed:
        with contextlib.suppress(Exception):
            await ws.close()
