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


class Refused(Exception):
    """A handshake Pulsar refuses: `status` and the text of its error page."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def invalid(message: str) -> Refused:
    """Pulsar's answer to an IllegalArgumentException in a producer or consumer handler."""
    return Refused(400, f"Invalid query params: {message}")


_INTEGER = re.compile(r"[+-]?[0-9]+")


def java_int(raw: str, status: int = 400, bits: int = 32) -> int:
    """`Integer.parseInt` (`Long.parseLong` with bits=64): anything else is refused with
    `status`; 400 is Pulsar's IllegalArgumentException, 500 an exception Jetty saw."""
    if _INTEGER.fullmatch(raw) and -(2 ** (bits - 1)) <= int(raw) < 2 ** (bits - 1):
        return int(raw)
    text = f'For input string: "{raw}"'
    if status == 400:
        raise invalid(text)
    raise Refused(status, f"java.lang.NumberFormatException: {text}")


def java_bool(query: Mapping[str, str], name: str) -> bool:
    """`Boolean.parseBoolean`: true only for `true` in any case; never an error."""
    return query.get(name, "").lower() == "true"


def enum_param(query: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """`Enum.valueOf` after Pulsar's `checkArgument`: exact names only."""
    value = query.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise invalid(f"Invalid {name} {value}")
    return value


def int_param(query: Mapping[str, str], name: str, default: int, *, low: int = 0, message: str = "") -> int:
    """An int parameter with a lower bound (Pulsar's builders check `checkArgument(v >= low)`)."""
    raw = query.get(name)
    if raw is None:
        return default
    value = java_int(raw)
    if value < low:
        raise invalid(message or f"{name} needs to be >= {low}")
    return value


def refuse(state: BrokerState, role: str, status: int, text: str) -> web.Response:
    """A plain HTTP status on the upgrade (Pulsar sends Jetty's HTML page; aiohttp clients see
    only the status, others may read the text)."""
    state.broker.stats.rejected(role, status)
    # A standby retries every second: its 409s are counted in metrics, not logged each time.
    (log.debug if status == 409 else log.info)("handshake_refused", role=role, status=status, reason=text)
    return web.Response(status=status, text=text)


def new_socket(state: BrokerState) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        # Pulsar's limit (webSocketMaxTextFrameSize) is checked by `too_big`, which closes with
        # Jetty's reason; aiohttp's own limit is only a backstop against huge frames.
        max_msg_size=state.settings.broker_max_frame_bytes * 4,
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


async def too_big(ws: web.WebSocketResponse, state: BrokerState, data: str | bytes) -> bool:
    """Close with 1009 as Pulsar (Jetty) does when a frame exceeds the maximum frame size."""
    limit = state.settings.broker_max_frame_bytes
    if len(data) * 4 <= limit:  # a str of n characters is at most 4n bytes of UTF-8
        return False
    size = len(data.encode()) if isinstance(data, str) else len(data)
    if size <= limit:
        return False
    state.broker.stats.bad_frame("too_big")
    await ws.close(code=1009, message=f"Text message size [{size}] exceeds maximum size [{limit}]".encode())
    return True


async def drop(ws: web.WebSocketResponse, request: web.Request, code: int | None, reason: str) -> None:
    """End a connection as Pulsar does after a frame it cannot handle: 1011 with the Java
    exception's text, or (code None) the TCP connection closed without a close frame."""
    if code is None:
        if request.transport is not None:
            request.transport.close()
        return
    await ws.close(code=code, message=reason.encode()[:120])
