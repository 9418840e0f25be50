"""Who may publish and who may read (issue #19), on the embedded broker and a secured Pulsar with
the same assertions: the handshake's 401 and 403 per credential and role, the admin API's answers
per role, granting through Pulsar's admin paths, the topic-level grant a consumer's dead-letter
copies need, open sessions that outlive an expired token and a revoked grant, TLS with a private CA.

The table of answers is scripts/pulsar/FINDINGS.md, "Authentication and authorization".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from streampair.config import ClientConfig
from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.errors import CertificateError, Unauthorized
from streampair.producer import Producer

from harness.secured import AUTH_REFRESH_SECONDS, SecuredBroker
from harness.tokens import hs256_token, new_secret_key
from tests.conformance.conftest import b64, unique

Roles = dict[str, str]


@pytest.fixture
async def roles(secured: SecuredBroker) -> AsyncIterator[Roles]:
    """Fresh roles: `prod` may produce, `cons` consume, `both` both, `nobody` nothing."""
    names = {name: unique(name) for name in ("prod", "cons", "both", "nobody")}
    await secured.grant(names["prod"], ["produce"])
    await secured.grant(names["cons"], ["consume"])
    await secured.grant(names["both"], ["produce", "consume"])
    yield names
    for role in names.values():  # Pulsar's namespace policies would otherwise grow every session
        await secured.admin("DELETE", f"/admin/v2/namespaces/public/default/permissions/{role}")


async def upgrade(
    broker: SecuredBroker, path: str, headers: dict[str, str] | None = None, **params: str
) -> int:
    """The status of one WebSocket upgrade (101 when accepted), on a connection of its own."""
    async with broker.session() as session:
        try:
            ws = await session.ws_connect(broker.wss + path, headers=headers or {}, params=params or None)
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        await ws.close()
        return 101


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_handshake_answers_401_for_who_and_403_for_what(
    secured: SecuredBroker, roles: Roles
) -> None:
    topic = unique("auth")
    paths = {
        "producer": (f"/ws/v2/producer/persistent/public/default/{topic}", {}),
        "consumer": (f"/ws/v2/consumer/persistent/public/default/{topic}/s", {}),
        "reader": (f"/ws/v2/reader/persistent/public/default/{topic}", {}),
        "v3 consumer": ("/ws/v3/consumer/s3", {"topics": f"persistent://public/default/{topic}"}),
    }
    both = secured.token(roles["both"])
    credentials: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "none": ({}, {}),
        "not a JWT": (bearer("not-a-jwt"), {}),
        "signed with another key": (bearer(hs256_token(new_secret_key(), roles["both"])), {}),
        "expired": (bearer(secured.token(roles["both"], expires_in=-60)), {}),
        "lower-case bearer": ({"Authorization": f"bearer {both}"}, {}),
        "Basic": ({"Authorization": f"Basic {both}"}, {}),
        "no grant": (bearer(secured.token(roles["nobody"])), {}),
        "produce": (bearer(secured.token(roles["prod"])), {}),
        "consume": (bearer(secured.token(roles["cons"])), {}),
        "both": (bearer(both), {}),
        "both, expiring in 1 h": (bearer(secured.token(roles["both"], expires_in=3600)), {}),
        "superuser": (secured.admin_headers, {}),
        "?token= instead of the header": ({}, {"token": both}),
    }
    refused_by_role = {"no grant": 403}
    for kind, (path, params) in paths.items():
        seen = {
            name: await upgrade(secured, path, headers, **params, **query)
            for name, (headers, query) in credentials.items()
        }
        may = "produce" if kind == "producer" else "consume"
        expected = {name: 401 for name in credentials}
        expected.update(refused_by_role)
        expected.update(
            {"produce": 101 if may == "produce" else 403, "consume": 101 if may == "consume" else 403}
        )
        expected.update(
            dict.fromkeys(
                ("both", "both, expiring in 1 h", "superuser", "?token= instead of the header"), 101
            )
        )
        assert seen == expected, kind


#: Who asks the admin API in test_the_admin_api_answers_each_role_as_pulsar_does: no token, then
#: the roles of the `roles` fixture with no grant, produce and consume, then the superuser.
ASKERS = ("none", "nobody", "prod", "cons", "superuser")
ADMIN: list[tuple[str, str, tuple[int, int, int, int, int]]] = [
    # method, path ({t}: a topic the superuser created, {new}: one that does not exist), the
    # answer to each of ASKERS
    ("PUT", "/admin/v2/persistent/public/default/{new}", (401, 403, 403, 403, 204)),
    ("DELETE", "/admin/v2/persistent/public/default/{new}", (401, 403, 403, 403, 404)),
    ("GET", "/admin/v2/persistent/public/default/{t}/stats", (401, 401, 200, 200, 200)),
    ("GET", "/admin/v2/persistent/public/default/{new}/stats", (401, 401, 404, 404, 404)),
    ("GET", "/admin/v2/persistent/public/default/{t}/subscriptions", (401, 401, 401, 200, 200)),
    ("DELETE", "/admin/v2/persistent/public/default/{t}/subscription/{role}", (401, 401, 401, 204, 204)),
    ("POST", "/admin/v2/persistent/public/default/{new}/terminate", (401, 401, 401, 401, 404)),
    ("GET", "/admin/v2/persistent/public/default", (401, 403, 200, 200, 200)),
    ("GET", "/admin/v2/namespaces/public/default", (401, 403, 403, 403, 200)),
    ("GET", "/admin/v2/namespaces/public/default/permissions", (401, 403, 403, 403, 200)),
    ("GET", "/admin/v2/namespaces/public", (401, 401, 401, 401, 200)),
    ("GET", "/admin/v2/tenants", (401, 401, 401, 401, 200)),
    ("GET", "/admin/v2/tenants/public", (401, 401, 401, 401, 200)),
    ("GET", "/admin/v2/brokers/health", (401, 401, 401, 401, 200)),
    ("GET", "/metrics", (200, 200, 200, 200, 200)),
]


async def test_the_admin_api_answers_each_role_as_pulsar_does(secured: SecuredBroker, roles: Roles) -> None:
    topic = unique("adm")
    assert (await secured.admin("PUT", f"/admin/v2/persistent/public/default/{topic}", {}))[0] == 204
    who = {
        "none": None,
        **{name: roles[name] for name in ("nobody", "prod", "cons")},
        "superuser": secured.superuser,
    }
    for role in who.values():  # one subscription each, for the deletions
        sub = f"/ws/v2/consumer/persistent/public/default/{topic}/{role or 'none'}"
        assert await upgrade(secured, sub, secured.admin_headers) == 101
    async with secured.session() as session:
        for method, template, answers in ADMIN:
            seen, expected = {}, dict(zip(ASKERS, answers, strict=True))
            for name, role in who.items():
                path = template.format(t=topic, new=unique("missing"), role=role or "none")
                headers = bearer(secured.token(role)) if role else {}
                body = {"json": {}} if method == "PUT" else {}
                async with session.request(method, secured.https + path, headers=headers, **body) as response:
                    seen[name] = response.status
                    if response.status in (401, 403) and role is not None:
                        assert (
                            "Unauthorized" in await response.text() or "permission" in await response.text()
                        )
            assert seen == expected, f"{method} {template}"


async def test_grants_replace_list_and_revoke_and_bad_ones_are_refused_as_on_pulsar(
    secured: SecuredBroker,
) -> None:
    role = unique("grant")
    path = f"/admin/v2/namespaces/public/default/permissions/{role}"

    async def listed() -> object:
        status, text = await secured.admin("GET", "/admin/v2/namespaces/public/default/permissions")
        assert status == 200
        return json.loads(text).get(role)

    assert (await secured.admin("POST", path, ["produce"]))[0] == 204
    assert await listed() == ["produce"]
    assert (await secured.admin("POST", path, ["consume", "produce"]))[0] == 204
    assert sorted(await listed()) == ["consume", "produce"]  # type: ignore[arg-type]
    assert (await secured.admin("POST", path, ["consume"]))[0] == 204  # it replaces, not adds
    assert await listed() == ["consume"]
    assert (await secured.admin("POST", path, ["write"]))[0] == 204  # Pulsar keeps an unknown action as null
    assert await listed() == [None]
    assert (await secured.admin("DELETE", path))[0] == 204
    assert await listed() is None
    assert (await secured.admin("DELETE", path))[0] == 204  # revoking what is not there is fine
    missing = await secured.admin(
        "POST", f"/admin/v2/namespaces/public/{unique('nons')}/permissions/{role}", ["produce"]
    )
    assert missing[0] == 404
    async with secured.session() as session:
        for data, content_type, status in (
            ("not json", "application/json", 400),
            ('{"a": 1}', "application/json", 400),
            ('["produce"]', "text/plain", 415),
        ):
            headers = {**secured.admin_headers, "Content-Type": content_type}
            async with session.post(secured.https + path, data=data, headers=headers) as response:
                assert response.status == status, data


async def test_the_dead_letter_stream_needs_a_produce_grant_on_its_topic_which_must_exist(
    secured: SecuredBroker,
) -> None:
    """What the consumer service's role needs to dead-letter (docs/security.md)."""
    role = unique("consumer-role")
    await secured.grant(role, ["consume"])
    dlq = f"{unique('stream')}-sub-DLQ"
    producer = f"/ws/v2/producer/persistent/public/default/{dlq}"
    token = bearer(secured.token(role))
    assert await upgrade(secured, producer, token) == 403  # consume alone cannot publish there
    grant = f"/admin/v2/persistent/public/default/{dlq}/permissions/{role}"
    assert (await secured.admin("POST", grant, ["produce"]))[0] == 404  # not on a topic that does not exist
    await secured.grant_on_topic(dlq, role, ["produce"])  # create it first, then grant
    assert await upgrade(secured, producer, token) == 101
    assert (
        await upgrade(secured, f"/ws/v2/producer/persistent/public/default/{unique('other')}", token) == 403
    )
    status, text = await secured.admin("GET", f"/admin/v2/persistent/public/default/{dlq}/permissions")
    assert status == 200 and sorted(json.loads(text)[role]) == ["consume", "produce"]  # namespace + topic
    assert (await secured.admin("DELETE", grant))[0] == 204
    assert await upgrade(secured, producer, token) == 403
    await secured.admin("DELETE", f"/admin/v2/namespaces/public/default/permissions/{role}")


async def test_open_sessions_outlive_an_expired_token_and_a_revoked_grant(secured: SecuredBroker) -> None:
    """Checked on Pulsar with its re-authentication every AUTH_REFRESH_SECONDS: the WebSocket
    service authorizes the upgrade only (FINDINGS); the embedded broker does the same."""
    role = unique("short")
    await secured.grant(role, ["produce", "consume"])
    topic = unique("expiry")
    token = secured.token(role, expires_in=2)
    base = f"/ws/v2/{{}}/persistent/public/default/{topic}"
    async with secured.session() as session:
        consumer = await session.ws_connect(
            secured.wss + base.format("consumer") + "/s", headers=bearer(token)
        )
        producer = await session.ws_connect(secured.wss + base.format("producer"), headers=bearer(token))
        outlive = time.monotonic() + 2 + 2 * AUTH_REFRESH_SECONDS + 1
        sent = 0
        revoked = False
        while time.monotonic() < outlive or not revoked:
            if not revoked and sent >= 4:
                await secured.admin("DELETE", f"/admin/v2/namespaces/public/default/permissions/{role}")
                revoked = True
            await producer.send_json({"payload": b64(f"m{sent}"), "context": str(sent)})
            answer = await producer.receive_json(timeout=10)
            assert answer["result"] == "ok", answer
            message = await consumer.receive_json(timeout=10)
            await consumer.send_json({"messageId": message["messageId"]})
            sent += 1
            await asyncio.sleep(0.5)
        assert not producer.closed and not consumer.closed
        await producer.close()
        await consumer.close()
    assert sent >= 10
    assert (
        await upgrade(secured, base.format("producer"), bearer(token)) == 401
    )  # expired: a new one is refused


async def test_the_client_over_tls_with_the_private_ca_and_a_clear_error_without_it(
    secured: SecuredBroker, connectors: list[Connector]
) -> None:
    role = unique("tls")
    await secured.grant(role, ["produce"])
    # the binary transport over pulsar+ssl:// through the library: test_the_binary_transport_over_tls
    for url in (secured.wss,):
        config = ClientConfig(url=url, stream=unique("tls"), auth_token=secured.token(role))
        trusted = Connector(replace(config, ca_bundle=secured.tls.ca))
        untrusted = Connector(config)
        connectors += [trusted, untrusted]
        ws = await trusted.open("producer")
        await ws.close()
        with pytest.raises(CertificateError) as error:
            await untrusted.open("producer")
        assert "could not be verified" in str(error.value) and "STREAM_CA_BUNDLE" in str(error.value)


async def test_the_client_names_the_setting_and_tells_401_from_403(
    secured: SecuredBroker, roles: Roles, connectors: list[Connector]
) -> None:
    stream = unique("refused")

    def connector(token: str) -> Connector:
        made = Connector(
            ClientConfig(url=secured.wss, stream=stream, auth_token=token, ca_bundle=secured.tls.ca)
        )
        connectors.append(made)
        return made

    for token, status, words in (
        (
            secured.token(roles["both"], expires_in=-1),
            401,
            "not authenticated: STREAM_AUTH_TOKEN is missing, wrong or expired",
        ),
        (hs256_token(new_secret_key(), roles["both"]), 401, "not authenticated"),
        (
            secured.token(roles["cons"]),
            403,
            f"may not publish to persistent://public/default/{stream}: grant it",
        ),
    ):
        with pytest.raises(Unauthorized) as refused:
            await connector(token).open("producer")
        assert refused.value.status == status and words in str(refused.value)
        assert token not in str(refused.value)


@pytest.mark.pulsar
async def test_the_binary_transport_over_tls_with_tokens(secured_pulsar: SecuredBroker) -> None:
    """pulsar+ssl:// (issue #14 with #19): the same CA and tokens as wss://. A message goes through
    with each role's token; without the CA, a certificate error; a producer-only role may not subscribe."""
    assert secured_pulsar.binary_tls is not None
    producer_role, consumer_role = unique("bin-prod"), unique("bin-cons")
    await secured_pulsar.grant(producer_role, ["produce"])
    await secured_pulsar.grant(consumer_role, ["consume"])
    stream = unique("binary-tls")
    base = ClientConfig(
        url=secured_pulsar.binary_tls,
        admin_url=secured_pulsar.https,
        stream=stream,
        ca_bundle=secured_pulsar.tls.ca,
        connect_timeout_seconds=10,
    )
    connectors = [
        Connector(replace(base, auth_token=secured_pulsar.token(producer_role))),
        Connector(replace(base, auth_token=secured_pulsar.token(consumer_role))),
        Connector(replace(base, auth_token=secured_pulsar.token(producer_role), ca_bundle=None)),
    ]
    sending, receiving, untrusted = connectors
    try:
        consumer = Consumer(receiving, "s")
        await consumer.connect()
        async with Producer(sending) as producer:
            await producer.send(b"over pulsar+ssl")
        message = await asyncio.wait_for(anext(aiter(consumer)), 30)
        assert message.data == b"over pulsar+ssl"
        assert await consumer.ack(message)
        await consumer.close()
        with pytest.raises(Unauthorized) as refused:  # the producer's role may not consume
            await Consumer(sending, "s").connect()
        assert refused.value.status == 403
        with pytest.raises(CertificateError) as error:
            await Consumer(untrusted, "s").connect()
        assert "could not be verified" in str(error.value) and "STREAM_CA_BUNDLE" in str(error.value)
    finally:
        for connector in connectors:
            await connector.close()
