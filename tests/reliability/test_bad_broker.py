"""The real consumer and producer processes against a scripted, misbehaving broker.

Frames that are not JSON, not an object, carry bad base64, miss fields, are over 5 MiB, or
answer an unknown context: each is counted in `streampair_malformed_frames_total{kind}`,
logged, and the service survives (a huge frame costs the connection, which comes back).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harness import Service, base_env, free_port, serve_app

TOPIC = "/ws/v2/{kind}/persistent/public/default/streamQuickstart"
HUGE = "x" * (5 * 1024 * 1024 + 128 * 1024)  # over the client's 5 MiB (+64 KiB) frame limit


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def good(seq: int) -> str:
    return json.dumps(
        {
            "messageId": b64(f"id-{seq}"),
            "payload": b64(f"hello {seq}"),
            "properties": {"producer_id": "bad-broker", "seq": str(seq)},
            "publishTime": "2024-01-01T00:00:00.000Z",
        }
    )


CONSUMER_GARBAGE: list[tuple[str, str]] = [
    ("not_json", "this is not json {"),
    ("not_object", "[1, 2, 3]"),
    ("missing_field", json.dumps({"payload": b64("no id")})),
    ("missing_field", json.dumps({"messageId": 17, "payload": b64("id is a number")})),
    ("bad_payload", json.dumps({"messageId": "bad-b64", "payload": "%%% not base64 %%%"})),
    ("bad_properties", json.dumps({"messageId": "bad-props", "payload": b64("x"), "properties": [1]})),
]


def malformed(metrics_text: str) -> dict[str, float]:
    out = {}
    for match in re.finditer(
        r'^streampair_malformed_frames_total\{kind="([^"]+)"\} (\S+)$', metrics_text, re.M
    ):
        out[match.group(1)] = float(match.group(2))
    return out


async def start(module: str, base: str, tmp: Path, **env: str) -> Service:
    svc = Service(
        module,
        module,
        base_env(
            STREAM_URL=base.replace("http://", "ws://"),
            HTTP_PORT=str(free_port()),
            RECONNECT_MAX_SECONDS="0.3",
            HEARTBEAT_SECONDS="2",
            **env,
        ),
    )
    await svc.start()
    return svc


@pytest.fixture
async def services() -> AsyncIterator[list[Service]]:
    started: list[Service] = []
    yield started
    await asyncio.gather(*(s.stop() for s in started), return_exceptions=True)


async def test_consumer_survives_garbage_and_huge_frames(services: list[Service], tmp_path: Path) -> None:
    connections = 0

    async def consumer(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if connections == 1:
            for _, frame in CONSUMER_GARBAGE:
                await ws.send_str(frame)
            await ws.send_str(good(1))
            await asyncio.sleep(0.3)
            with contextlib.suppress(ConnectionError):  # the client closes (1009) and reconnects
                await ws.send_str(HUGE)
        else:
            await ws.send_str(good(2))
        async for _ in ws:  # acks
            pass
        return ws

    app = web.Application()
    app.router.add_get(TOPIC.format(kind="consumer") + "/{sub}", consumer)
    async with serve_app(app) as base:
        svc = await start("consumer", base, tmp_path, LOG_PAYLOADS="true")
        services.append(svc)
        for seq in ("1", "2"):
            await svc.wait_for(
                lambda line, s=seq: (
                    line.get("event") == "received" and (line.get("properties") or {}).get("seq") == s
                )
            )
        _, text = await svc.get_json("/metrics")
        counts = malformed(text)
        for kind, _ in CONSUMER_GARBAGE:
            assert counts.get(kind, 0) >= 1, (kind, counts)
        assert counts.get("too_large", 0) >= 1, counts
        warnings = [line for line in svc.lines if line.get("event") == "malformed_frame"]
        assert len(warnings) >= len(CONSUMER_GARBAGE)
        assert connections >= 2  # the huge frame cost one connection; the consumer came back
        status, body = await svc.get_json("/livez")
        assert status == 200 and body["status"] == "ok"
        await svc.wait_http("/readyz", lambda s, _: s == 200)
    assert "Traceback" not in svc.stderr.decode()


async def test_producer_survives_garbage_answers_and_huge_frames(
    services: list[Service], tmp_path: Path
) -> None:
    connections = 0

    async def create(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def producer(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        first = True
        async for msg in ws:
            frame: dict[str, Any] = json.loads(msg.data)
            if connections == 1 and first:
                first = False
                for garbage in (
                    "not json at all",
                    "[]",
                    json.dumps({"context": frame["context"]}),  # no result
                    json.dumps({"result": "ok", "messageId": b64("x"), "context": "no-such-context"}),
                    json.dumps({"result": "send-error:3", "errorMsg": "uncorrelated"}),
                ):
                    await ws.send_str(garbage)
                await asyncio.sleep(0.2)
                with contextlib.suppress(ConnectionError):  # costs the connection; resent on the next
                    await ws.send_str(HUGE)
                continue
            answer = {"result": "ok", "messageId": b64(f"id-{frame['context']}"), "context": frame["context"]}
            await ws.send_str(json.dumps(answer))
        return ws

    app = web.Application()
    app.router.add_put("/admin/v2/persistent/public/default/streamQuickstart", create)
    app.router.add_get(TOPIC.format(kind="producer"), producer)
    async with serve_app(app) as base:
        svc = await start("producer", base, tmp_path, PUBLISH_INTERVAL_SECONDS="0.05", PRODUCER_ID="p")
        services.append(svc)
        await svc.wait_for(lambda line: line.get("event") == "published" and line.get("seq") == 1)
        await svc.wait_for(lambda line: line.get("event") == "published" and line.get("seq") >= 5)
        _, text = await svc.get_json("/metrics")
        counts = malformed(text)
        assert counts.get("producer_answer", 0) >= 3, counts  # not JSON, not an object, no result
        assert counts.get("unknown_context", 0) >= 2, counts
        assert counts.get("too_large", 0) >= 1, counts
        assert connections >= 2
        assert not svc.events("publish_failed")
        status, _ = await svc.get_json("/livez")
        assert status == 200
    assert "Traceback" not in svc.stderr.decode()
