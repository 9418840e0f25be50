"""One conformance suite, three targets: every test runs against the `embedded` broker, a real
Apache Pulsar through its WebSocket API (`pulsar`) and the same Pulsar through its binary
protocol (`binary`), with the same assertions (the Pulsar targets are marked `pulsar`:
`make test-pulsar`).

On `binary` our library (Connector, Producer, Consumer, Reader, StreamAdmin) speaks the binary
protocol; the raw helpers below (`target.producer()`, `target.consumer()`, ...) still open
WebSockets on the same Pulsar, so a mixed test also checks that both transports see the same
topic. A test of the WebSocket wire itself (frames, handshake statuses, query parameters), or
of the admin REST API alone (the same requests on both Pulsar targets), is marked
`@pytest.mark.ws_only("why")` and runs on the embedded and Pulsar WebSocket targets only; what
such a test checks at the client's level is checked through the library, on all three, in
test_client.py.

The embedded broker starts in-process per test on an ephemeral port with a fresh data dir.
Pulsar is `PULSAR_URL` (and `PULSAR_BINARY_URL`) or a standalone started once per session
(harness/pulsar.py). Every test uses its own topic and subscription names, so tests never see
each other's messages on the shared Pulsar. Where the brokers disagreed, the embedded broker
was changed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import pytest
from broker.testing import running_broker
from pydantic import SecretStr
from streampair.config import ClientConfig
from streampair.connection import Connector

from harness.pulsar import PulsarEndpoints
from harness.secured import SUPERUSER, SecuredBroker, embedded_env, tls_material
from harness.tokens import new_secret_key

T = TypeVar("T")
Frame = dict[str, Any]
WS = aiohttp.ClientWebSocketResponse

TARGETS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("pulsar", id="pulsar", marks=pytest.mark.pulsar),
    pytest.param("binary", id="binary", marks=pytest.mark.pulsar),
]
WEBSOCKET_TARGETS = TARGETS[:2]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`target` on the three targets; a test marked `ws_only` on the two WebSocket ones."""
    if "target" in metafunc.fixturenames:
        ws_only = metafunc.definition.get_closest_marker("ws_only") is not None
        metafunc.parametrize("target", WEBSOCKET_TARGETS if ws_only else TARGETS, indirect=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


@dataclass
class Target:
    """One broker under test and a client session to it."""

    name: str  # "embedded" | "pulsar" | "binary"
    http: str  # http://127.0.0.1:PORT: admin REST and (as ws://) the WebSocket API
    session: aiohttp.ClientSession
    #: pulsar://127.0.0.1:PORT on the binary target: the library's URL there.
    binary: str | None = None

    @property
    def wire(self) -> Literal["websocket", "binary"]:
        """The protocol our library speaks on this target."""
        return "binary" if self.binary else "websocket"

    @property
    def url(self) -> str:
        """STREAM_URL for the library and the services on this target."""
        return self.binary or self.ws

    @property
    def stream_env(self) -> dict[str, str]:
        """The services' environment for this target (STREAM_URL, and the admin URL on binary)."""
        env = {"STREAM_URL": self.url}
        if self.binary:
            env["STREAM_ADMIN_URL"] = self.http
        return env

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http")

    # -- names and URLs ----------------------------------------------------------------------

    def path(self, role: str, topic: str, subscription: str | None = None) -> str:
        path = f"/ws/v2/{role}/persistent/public/default/{topic}"
        return path + f"/{subscription}" if subscription is not None else path

    def ws_url(self, role: str, topic: str, subscription: str | None = None) -> str:
        return self.ws + self.path(role, topic, subscription)

    def admin_url(self, topic: str) -> str:
        return f"{self.http}/admin/v2/persistent/public/default/{topic}"

    # -- the library -------------------------------------------------------------------------

    def settings(self, topic: str, **extra: Any) -> ClientConfig:
        admin = {"admin_url": self.http} if self.binary else {}
        return ClientConfig(backend="pulsar", url=self.url, stream=topic, **{**admin, **extra})

    def connector(self, topic: str) -> Connector:
        """A Connector on its own session (closed by the Connector's owner, see `connectors`)."""
        return Connector(self.settings(topic))

    # -- raw WebSockets ----------------------------------------------------------------------

    async def producer(self, topic: str, **params: str) -> WS:
        return await self.session.ws_connect(self.ws_url("producer", topic), params=params or None)

    async def consumer(self, topic: str, sub: str, **params: str) -> WS:
        return await self.session.ws_connect(self.ws_url("consumer", topic, sub), params=params or None)

    async def reader(self, topic: str, **params: str) -> WS:
        return await self.session.ws_connect(self.ws_url("reader", topic), params=params or None)

    async def stats(self, topic: str) -> Frame:
        async with self.session.get(self.admin_url(topic) + "/stats") as response:
            assert response.status == 200, (response.status, await response.text())
            body: Frame = await response.json(content_type=None)
            return body


@pytest.fixture
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param in ("pulsar", "binary"):
        endpoints: PulsarEndpoints = request.getfixturevalue("pulsar")
        binary = endpoints.binary if request.param == "binary" else None
        async with aiohttp.ClientSession() as session:
            yield Target(request.param, endpoints.http, session, binary)
        return
    async with running_broker(tmp_path / "broker") as url, aiohttp.ClientSession() as session:
        yield Target("embedded", url, session)


@pytest.fixture(params=TARGETS)
async def secured(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SecuredBroker]:
    """A broker with token authentication, roles and TLS: the embedded one (in-process, per
    test) or the session's secured Pulsar (`secured_pulsar`)."""
    if request.param == "pulsar":
        yield request.getfixturevalue("secured_pulsar")
        return
    material, key = tls_material(tmp_path / "tls"), new_secret_key()
    async with running_broker(
        tmp_path / "broker",
        tls=(material.cert, material.key),
        broker_token_secret_key=SecretStr(embedded_env(material, key)["BROKER_TOKEN_SECRET_KEY"]),
        broker_superuser_roles=SUPERUSER,
    ) as url:
        yield SecuredBroker("embedded", url, material, key)


@pytest.fixture
async def connectors() -> AsyncIterator[list[Connector]]:
    """Connectors made by a test, closed after it (append them)."""
    made: list[Connector] = []
    yield made
    for connector in made:
        await connector.close()


# -- frames ------------------------------------------------------------------------------------


async def send(ws: WS, frame: Frame) -> None:
    await ws.send_str(json.dumps(frame))


async def recv(ws: WS, timeout: float = 10.0) -> Frame:
    """The next text frame as JSON (the timeout only guards against a hang)."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: Frame = json.loads(msg.data)
    return frame


async def recv_n(ws: WS, count: int, timeout: float = 10.0) -> list[Frame]:
    return [await recv(ws, timeout) for _ in range(count)]


async def nothing_within(ws: WS, seconds: float) -> None:
    """Assert that no frame arrives for `seconds`: an absence has no event to await."""
    try:
        msg = await ws.receive(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected no frame, got {msg.type}: {str(msg.data)[:300]}")


async def publish(ws: WS, texts: list[str], key: Callable[[str], str | None] | None = None) -> list[str]:
    """Publish `texts` (context = text), one at a time; returns their message ids."""
    ids = []
    for text in texts:
        frame: Frame = {"payload": b64(text), "context": text}
        if key is not None and (k := key(text)) is not None:
            frame["key"] = k
        await send(ws, frame)
        answer = await recv(ws)
        assert answer["result"] == "ok" and answer["context"] == text, answer
        ids.append(answer["messageId"])
    return ids


async def ack(ws: WS, frame: Frame) -> None:
    await send(ws, {"messageId": frame["messageId"]})


async def nack(ws: WS, frame: Frame) -> None:
    await send(ws, {"type": "negativeAcknowledge", "messageId": frame["messageId"]})


def texts_of(frames: list[Frame]) -> list[str]:
    return [unb64(f["payload"]) for f in frames]


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll `probe` until `ok(value)`: for broker state that has no event (admin stats)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)
