"""The binary transport's own parts, without a Pulsar (they run in `make test`): the results of
pulsar-client mapped to our errors, message ids, and what the client sends and refuses on the
wire, seen from a loopback stand-in that records the first bytes of each connection (Pulsar's
CONNECT command, which carries the token) and answers nothing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pulsar  # type: ignore[import-untyped]
import pytest
import trustme
from aiohttp import web
from streampair import ClientConfig, Connector, Consumer
from streampair.binary_native import error_for_result, message_id_text, parse_message_id
from streampair.connection import attempt_result
from streampair.errors import (
    BrokerUnavailable,
    CertificateError,
    HandshakeError,
    InvalidRequest,
    NamespaceNotFound,
    ProducerBusy,
    StreamNotFound,
    SubscriptionBusy,
    TopicTerminated,
    Unauthorized,
)

from harness import serve_app


@pytest.mark.parametrize(
    ("result", "role", "cls", "label"),
    [
        (pulsar.Result.ConsumerBusy, "consumer", SubscriptionBusy, "busy"),
        (pulsar.Result.ProducerBusy, "producer", ProducerBusy, "busy"),
        (pulsar.Result.ProducerFenced, "producer", ProducerBusy, "busy"),
        (pulsar.Result.AuthenticationError, "consumer", Unauthorized, "unauthenticated"),
        (pulsar.Result.AuthorizationError, "producer", Unauthorized, "forbidden"),
        (pulsar.Result.TopicNotFound, "reader", StreamNotFound, "not_found"),
        (pulsar.Result.InvalidTopicName, "consumer", InvalidRequest, "invalid"),
        (pulsar.Result.Timeout, "consumer", BrokerUnavailable, "unavailable"),
        (pulsar.Result.ConnectError, "producer", BrokerUnavailable, "unavailable"),
        (pulsar.Result.ServiceUnitNotReady, "consumer", BrokerUnavailable, "unavailable"),
    ],
)
def test_results_map_to_the_errors_and_labels_of_the_websocket_refusals(
    result: object, role: str, cls: type[HandshakeError], label: str
) -> None:
    error = error_for_result(result, role, "detail from the broker")
    assert type(error) is cls
    assert attempt_result(error) == label  # the same metric label as the WebSocket refusal
    assert error.retryable is (cls in (BrokerUnavailable, Unauthorized))
    assert str(result).split(".")[-1] in str(error) and "detail from the broker" in str(error)


def test_the_brokers_words_pick_the_finer_class() -> None:
    missing = error_for_result(pulsar.Result.TopicNotFound, "producer", "Namespace not found")
    assert isinstance(missing, NamespaceNotFound) and "STREAM_NAMESPACE" in str(missing)
    assert isinstance(error_for_result(pulsar.Result.TopicTerminated, "producer"), TopicTerminated)
    # ...but a connection error's words never make a retryable failure final
    cut = error_for_result(pulsar.Result.ConnectError, "consumer", "Connection terminated by peer")
    assert type(cut) is BrokerUnavailable and cut.retryable


def test_message_ids_round_trip_and_read_the_websocket_form() -> None:
    native = pulsar.MessageId(-1, 5, 0, -1)
    text = message_id_text(native._msg_id)
    assert text == "CAUQAA=="
    assert parse_message_id(text) == native._msg_id
    # Pulsar's WebSocket API writes the same position with batch_size=0: "CAUQADAA".
    assert parse_message_id("CAUQADAA") == native._msg_id


@dataclass
class StandIn:
    """A TCP (or TLS) listener that records the first bytes of every connection and closes it."""

    port: int = 0
    first_bytes: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, needle: bytes) -> Callable[[], bool]:
        return lambda: any(needle in data for data in self.first_bytes)


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[[ssl.SSLContext | None], asyncio.Future[StandIn]]]:
    servers: list[asyncio.Server] = []

    async def start(tls: ssl.SSLContext | None) -> StandIn:
        seen = StandIn()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                seen.first_bytes.append(await asyncio.wait_for(reader.read(4096), 5))
                seen.arrived.set()
            except (TimeoutError, OSError, ssl.SSLError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        seen.port = server.sockets[0].getsockname()[1]
        return seen

    def starter(tls: ssl.SSLContext | None = None) -> asyncio.Future[StandIn]:
        return asyncio.ensure_future(start(tls))

    yield starter
    for server in servers:
        server.close()
        await server.wait_closed()


async def wait_until(broker: StandIn, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until the stand-in's records satisfy `condition` (a connection it gets wakes us)."""
    async with asyncio.timeout(timeout):
        while not condition():
            broker.arrived.clear()
            await broker.arrived.wait()  # the client reconnects every 0.1-0.4 s: one comes


async def test_the_token_file_is_read_again_for_every_connection(
    stand_in: Callable[..., asyncio.Future[StandIn]], tmp_path: Path
) -> None:
    broker = await stand_in()
    token = tmp_path / "token"
    token.write_text("first-token\n")
    async with serve_app(web.Application()) as admin:  # 404 to the lookup probe: no verdict
        connector = Connector(
            ClientConfig(
                url=f"pulsar://127.0.0.1:{broker.port}",
                stream="t",
                auth_token_file=token,
                connect_timeout_seconds=3,
                admin_url=admin,
            )
        )
        attempt = asyncio.create_task(Consumer(connector, "s").connect())
        try:
            await wait_until(broker, broker.saw(b"first-token"))
            token.write_text("second-token\n")  # rotated while the client reconnects
            await wait_until(broker, broker.saw(b"second-token"))
            with pytest.raises(BrokerUnavailable):
                await attempt
        finally:
            attempt.cancel()
            await connector.close()
    assert b"token" in broker.first_bytes[0]  # auth method "token", as Pulsar's CONNECT names it


async def test_a_token_the_broker_drops_us_for_is_unauthorized_not_unavailable(
    stand_in: Callable[..., asyncio.Future[StandIn]],
) -> None:
    """Pulsar closes the connection on a bad token without a word and the client reports a
    Timeout; the transport then asks the admin API's lookup with the same token."""
    broker = await stand_in()
    app = web.Application()
    lookups: list[str | None] = []

    async def lookup(request: web.Request) -> web.Response:
        lookups.append(request.headers.get("Authorization"))
        return web.json_response({"reason": "Authentication required"}, status=401)

    app.router.add_get("/lookup/v2/topic/persistent/public/default/t", lookup)
    async with serve_app(app) as admin:
        connector = Connector(
            ClientConfig(
                url=f"pulsar://127.0.0.1:{broker.port}",
                stream="t",
                auth_token="forged",
                connect_timeout_seconds=1,
                admin_url=admin,
            )
        )
        try:
            with pytest.raises(Unauthorized) as refused:
                await Consumer(connector, "s").connect()
        finally:
            await connector.close()
    assert refused.value.status == 401 and "STREAM_AUTH_TOKEN" in str(refused.value)
    assert "forged" not in str(refused.value)
    assert lookups == ["Bearer forged"]


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def server_context(authority: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    return context


@pytest.mark.parametrize(
    ("names", "with_bundle", "verified"),
    [
        (("127.0.0.1",), True, True),
        (("127.0.0.1",), False, False),  # a private CA without STREAM_CA_BUNDLE
        (("localhost",), True, False),  # the certificate does not name the host we dialled
    ],
)
async def test_pulsar_ssl_verifies_the_certificate_and_the_host_name(
    stand_in: Callable[..., asyncio.Future[StandIn]],
    ca: tuple[trustme.CA, Path],
    names: tuple[str, ...],
    with_bundle: bool,
    verified: bool,
) -> None:
    authority, bundle = ca
    broker = await stand_in(server_context(authority, *names))
    connector = Connector(
        ClientConfig(
            url=f"pulsar+ssl://127.0.0.1:{broker.port}",
            stream="t",
            ca_bundle=bundle if with_bundle else None,
            connect_timeout_seconds=1,
            admin_url="http://127.0.0.1:9",  # discard: nothing listens, the probe has no verdict
        )
    )
    try:
        with pytest.raises(BrokerUnavailable if verified else CertificateError) as failed:
            await Consumer(connector, "s").connect()
    finally:
        await connector.close()
    if verified:  # the TLS session was set up and Pulsar's CONNECT went through it
        assert broker.saw(b"Pulsar-CPP")()
    else:
        assert "could not be verified" in str(failed.value) and not failed.value.retryable
        assert broker.first_bytes == []  # nothing in plain text, ever
