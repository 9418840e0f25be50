"""Shared fixtures: an in-process broker on an ephemeral port, WebSocket helpers, and a
factory for `python -m broker` subprocesses (for restarts, kill -9 and signals)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from broker.testing import running_broker

from harness import free_port

TOPIC = "persistent://public/default/t"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def ws_url(base: str, path: str) -> str:
    return base.replace("http", "ws", 1) + path


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    async with running_broker(tmp_path / "data") as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Client:
    """Small helpers over an aiohttp session bound to one broker."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def producer(self, topic: str = "t", **query: Any) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(
            ws_url(self.base, f"/ws/v2/producer/persistent/public/default/{topic}"), params=query or None
        )

    async def consumer(
        self, sub: str = "s", topic: str = "t", **query: Any
    ) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(
            ws_url(self.base, f"/ws/v2/consumer/persistent/public/default/{topic}/{sub}"),
            params={k: str(v) for k, v in query.items()} or None,
        )

    async def reader(self, topic: str = "t", **query: Any) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(
            ws_url(self.base, f"/ws/v2/reader/persistent/public/default/{topic}"),
            params={k: str(v) for k, v in query.items()} or None,
        )


@pytest.fixture
def client(base_url: str, session: aiohttp.ClientSession) -> Client:
    return Client(base_url, session)


async def send_json(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
    await ws.send_str(orjson.dumps(frame).decode())


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = orjson.loads(msg.data)
    return frame


async def nothing(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.3) -> None:
    """Assert that no frame arrives within `wait` seconds (absence cannot be awaited)."""
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=wait)


async def publish(
    ws: aiohttp.ClientWebSocketResponse, text: str, *, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    frame: dict[str, Any] = {"payload": b64(text), "context": text, **extra}
    if key is not None:
        frame["key"] = key
    await send_json(ws, frame)
    answer = await recv(ws)
    assert answer["result"] == "ok", answer
    return answer


async def publish_many(ws: aiohttp.ClientWebSocketResponse, texts: list[str]) -> list[str]:
    """Send all, then collect the answers (pipelined); returns message ids in order."""
    for text in texts:
        await send_json(ws, {"payload": b64(text), "context": text})
    ids = {}
    for _ in texts:
        answer = await recv(ws)
        assert answer["result"] == "ok", answer
        ids[answer["context"]] = answer["messageId"]
    return [ids[text] for text in texts]


async def ack(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
    await send_json(ws, {"messageId": frame["messageId"]})


async def metric(session: aiohttp.ClientSession, base: str, line_prefix: str) -> float:
    async with session.get(base + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- subprocess brokers ------------------------------------------------------------------------------


class BrokerProcess:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        env = {
            **os.environ,
            "BROKER_PORT": str(self.port),
            "BROKER_DATA_DIR": str(self.data_dir),
            "LOG_LEVEL": "warning",
            **self.env,
        }
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with (self.data_dir.parent / f"broker-{self.port}.stderr").open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    async def start(self) -> None:
        self.spawn()
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = 15.0) -> None:
        """Poll /health: a process gives no event to await for "listening" (unavoidable polling)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as client:
            while loop.time() < deadline:
                assert self.proc is not None and self.proc.poll() is None, "broker exited at start"
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(self.base + "/admin/v2/brokers/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError("broker did not become healthy")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    made: list[BrokerProcess] = []

    def make(data_dir: Path | None = None, port: int | None = None, **env: str) -> BrokerProcess:
        process = BrokerProcess(data_dir or tmp_path / "data", port or free_port(), env)
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


def run_main(env: dict[str, str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m broker` expecting it to exit by itself (configuration errors)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "broker"],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
