"""The services against a secured broker (issue #19), the embedded one and a real Pulsar with token
authentication, authorization and TLS (`make test-pulsar`), with the same assertions:

- least privilege: the producer's role may only produce, the consumer's only consume, plus produce
  on its dead-letter topic; the stream cannot be created by the producer (403) and that is fine;
- a wrong, expired or under-privileged token: the service stays up, not ready, `/readyz` names the
  setting and 401 or 403, one warning line, attempts no faster than every 5 s, counted; a rotated
  token file fixes it without a restart;
- the token file rotated mid-stream, the old token expired, every connection dropped: the services
  come back with the new token and every sequence number arrives;
- over wss:// without the CA: a clear certificate error and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.chaos_proxy import FaultProxy
from harness import FAST, Cluster, Service, all_received, is_event, stop_producer_and_collect
from harness.secured import SecuredBroker, start_embedded
from harness.tokens import hs256_token, new_secret_key
from tests.conformance.conftest import TARGETS, unique
from tests.security.test_secrets import assert_absent, everything_written


@dataclass
class Setup:
    cluster: Cluster
    broker: SecuredBroker
    tmp: Path

    def token_file(self, name: str, token: str) -> Path:
        path = self.tmp / f"{name}.token"
        write_token(path, token)
        return path

    async def roles(self) -> tuple[str, str]:
        """A producer role that may produce and a consumer role that may consume, on the namespace."""
        producer, consumer = unique("producer-role"), unique("consumer-role")
        await self.broker.grant(producer, ["produce"])
        await self.broker.grant(consumer, ["consume"])
        return producer, consumer


#: Every token a test wrote, for the search of everything the services printed.
written: list[str] = []


def write_token(path: Path, token: str) -> None:
    """Replace the file atomically, as kubelet swaps a projected Secret."""
    written.append(token)
    temporary = path.with_suffix(".new")
    temporary.write_text(token + "\n")
    temporary.replace(path)


@pytest.fixture(params=TARGETS)
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    stream = {"STREAM_NAME": unique("secured"), "SUBSCRIPTION_NAME": unique("sub")}
    if request.param == "pulsar":
        broker: SecuredBroker = request.getfixturevalue("secured_pulsar")
        cluster = Cluster(tmp_path, STREAM_URL=broker.wss, STREAM_CA_BUNDLE=str(broker.tls.ca), **stream)
    else:
        cluster = Cluster(tmp_path, **stream)
        _, broker = await start_embedded(cluster, tmp_path)
    try:
        yield Setup(cluster, broker, tmp_path)
    finally:
        await cluster.stop()


async def test_least_privilege_producer_produces_consumer_consumes_and_dead_letters(setup: Setup) -> None:
    producer_role, consumer_role = await setup.roles()
    stream, subscription = (
        setup.cluster.stream_env["STREAM_NAME"],
        setup.cluster.stream_env["SUBSCRIPTION_NAME"],
    )
    # The one extra right the consumer needs: produce on its dead-letter topic (created first).
    await setup.broker.grant_on_topic(f"{stream}-{subscription}-DLQ", consumer_role, ["produce"])
    consumer = await setup.cluster.start_consumer(
        "consumer-1",
        STREAM_AUTH_TOKEN_FILE=str(setup.token_file("consumer", setup.broker.token(consumer_role))),
        FAIL_ON_PROPERTY="poison",
        MAX_DELIVERY_ATTEMPTS="2",
        RETRY_DELAY_SECONDS="0.2",
    )
    await consumer.wait_for(is_event("subscribed"), timeout=30)
    producer = await setup.cluster.start_producer(
        STREAM_AUTH_TOKEN_FILE=str(setup.token_file("producer", setup.broker.token(producer_role))),
        PUBLISH_INTERVAL_SECONDS=FAST,
    )
    refused = await producer.wait_for(is_event("stream_not_ensured"), timeout=30)
    assert "403" in str(refused["error"]), refused  # may not create the stream: publishes anyway
    await consumer.wait_for(is_event("received"), timeout=30)
    status, _ = await producer.post_json("/messages", {"payload": "poison", "properties": {"poison": "yes"}})
    assert status == 201
    copy = await consumer.wait_for(is_event("dead_lettered"), timeout=60)
    assert copy["dead_letter_stream"] == f"{stream}-{subscription}-DLQ"
    for svc in (producer, consumer):  # the handshakes were all allowed; only the admin PUT was not
        assert await svc.metric("streampair_connection_attempts_total", 'result="forbidden"') == 0
    expected = await stop_producer_and_collect(producer)
    await all_received(expected, consumer)


async def test_without_the_dead_letter_grant_a_poison_message_waits_unacked_until_granted(
    setup: Setup,
) -> None:
    producer_role, consumer_role = await setup.roles()
    stream, subscription = (
        setup.cluster.stream_env["STREAM_NAME"],
        setup.cluster.stream_env["SUBSCRIPTION_NAME"],
    )
    dlq = f"{stream}-{subscription}-DLQ"
    consumer = await setup.cluster.start_consumer(
        "consumer-1",
        STREAM_AUTH_TOKEN_FILE=str(setup.token_file("consumer", setup.broker.token(consumer_role))),
        FAIL_ON_PROPERTY="poison",
        MAX_DELIVERY_ATTEMPTS="1",
        CONNECT_TIMEOUT_SECONDS="2",  # the dead-letter send gives up after 3 x this, then tries again
    )
    await consumer.wait_for(is_event("subscribed"), timeout=30)
    producer = await setup.cluster.start_producer(
        STREAM_AUTH_TOKEN_FILE=str(setup.token_file("producer", setup.broker.token(producer_role))),
        PUBLISH_INTERVAL_SECONDS="3600",
    )
    await producer.wait_http("/readyz", lambda code, _: code == 200, timeout=30)
    status, _ = await producer.post_json("/messages", {"payload": "poison", "properties": {"poison": "yes"}})
    assert status == 201
    refused = await consumer.wait_for(
        lambda line: line.get("event") == "producer_connect_failed" and dlq in str(line.get("error")),
        timeout=30,
    )
    assert (
        "HTTP 403" in refused["error"]
        and "may not publish to" in refused["error"]
        and "grant it" in refused["error"]
    )
    await consumer.wait_for(is_event("dead_letter_failed"), timeout=30)
    assert not consumer.events("dead_lettered")
    await setup.broker.grant_on_topic(dlq, consumer_role, ["produce"])
    copy = await consumer.wait_for(is_event("dead_lettered"), timeout=60)
    assert copy["dead_letter_stream"] == dlq


@dataclass
class Refused:
    """One service started with a token the broker refuses."""

    case: str
    svc: Service
    token_file: Path
    role: str
    status: int  # what the broker answers: 401 or 403
    label: str  # the attempts metric's result label


CASES = {  # case: (status, metric label)
    "wrong key": (401, "unauthenticated"),
    "expired": (401, "unauthenticated"),
    "under-privileged": (403, "forbidden"),  # a valid token of the other service's role
}


def refused_token(setup: Setup, case: str, role: str, other: str) -> str:
    if case == "wrong key":
        return hs256_token(new_secret_key(), role)
    if case == "expired":
        return setup.broker.token(role, expires_in=-5)
    return setup.broker.token(other)


async def test_refused_tokens_keep_the_services_up_not_ready_quiet_and_slow_until_rotated(
    setup: Setup,
) -> None:
    producer_role, consumer_role = await setup.roles()
    refused: list[Refused] = []
    for case, (status, label) in CASES.items():
        for kind, role, other in (
            ("producer", producer_role, consumer_role),
            ("consumer", consumer_role, producer_role),
        ):
            name = f"{kind}-{case.replace(' ', '-')}"
            path = setup.token_file(name, refused_token(setup, case, role, other))
            env = {"STREAM_AUTH_TOKEN_FILE": str(path), "PUBLISH_INTERVAL_SECONDS": "0.2"}
            start = setup.cluster.start_producer if kind == "producer" else setup.cluster.start_consumer
            refused.append(Refused(case, await start(name, **env), path, role, status, label))
    for r in refused:
        body = await r.svc.wait_http(
            "/readyz", lambda code, body: code == 503 and "STREAM_AUTH_TOKEN_FILE" in str(body), timeout=30
        )
        assert f"HTTP {r.status}" in body["reason"], (r.case, r.svc.name, body)
        assert ("authenticated, but the role" if r.status == 403 else "not authenticated") in body["reason"]
    metric = "streampair_connection_attempts_total"
    before = {r.svc.name: await r.svc.metric(metric, f'result="{r.label}"') for r in refused}
    await asyncio.sleep(6.0)  # an absence (no retry storm) has no event to await
    for r in refused:
        attempts = await r.svc.metric(metric, f'result="{r.label}"')
        assert attempts >= 1 and attempts - before[r.svc.name] <= 2, (r.case, r.svc.name, attempts)
        warnings = [
            line
            for line in r.svc.lines
            if line.get("level") == "warning"
            and line.get("event") in ("subscribe_failed", "producer_connect_failed")
        ]
        assert len(warnings) == 1, (r.case, r.svc.name, warnings)  # one clear line, not one per attempt
        assert r.svc.proc is not None and r.svc.proc.returncode is None, f"{r.svc.name} exited"
    for r in refused:  # a rotated token fixes it, without a restart
        write_token(r.token_file, setup.broker.token(r.role))
    for r in refused:
        await r.svc.wait_http("/readyz", lambda code, _: code == 200, timeout=30)
    secrets = set(written)
    await setup.cluster.stop()
    assert_absent(everything_written(*(r.svc for r in refused)), secrets)  # refused or not, never printed


async def test_a_token_file_rotated_mid_stream_with_the_old_token_expired_loses_nothing(setup: Setup) -> None:
    producer_role, consumer_role = await setup.roles()
    port = int(setup.broker.https.rsplit(":", 1)[1])
    proxy = FaultProxy(port)
    await proxy.start()
    setup.cluster.stream_env["STREAM_URL"] = f"wss://127.0.0.1:{proxy.port}"
    lifetime = 8.0
    expires = time.monotonic() + lifetime
    files = {
        "producer": setup.token_file("producer", setup.broker.token(producer_role, expires_in=lifetime)),
        "consumer": setup.token_file("consumer", setup.broker.token(consumer_role, expires_in=lifetime)),
    }
    try:
        consumer = await setup.cluster.start_consumer(
            "consumer-1", STREAM_AUTH_TOKEN_FILE=str(files["consumer"]), RECONNECT_MAX_SECONDS="0.5"
        )
        await consumer.wait_for(is_event("subscribed"), timeout=30)
        producer = await setup.cluster.start_producer(
            STREAM_AUTH_TOKEN_FILE=str(files["producer"]),
            PUBLISH_INTERVAL_SECONDS=FAST,
            RECONNECT_MAX_SECONDS="0.5",
        )
        await consumer.wait_for(is_event("received"), timeout=30)
        write_token(files["producer"], setup.broker.token(producer_role))
        write_token(files["consumer"], setup.broker.token(consumer_role))
        await asyncio.sleep(max(0.0, expires - time.monotonic()) + 1.0)  # the old tokens have expired
        marks = {svc.name: len(svc.lines) for svc in (producer, consumer)}
        proxy.drop()  # every connection: both must reconnect, and only the new token is accepted now
        for svc in (producer, consumer):  # both reconnect, and every attempt presented the new token
            await svc.wait_for(is_event("connected"), timeout=30, start=marks[svc.name])
            assert await svc.metric("streampair_connection_attempts_total", 'result="unauthenticated"') == 0
        await consumer.wait_for(is_event("received"), timeout=30, start=marks[consumer.name])
        expected = await stop_producer_and_collect(producer)
        await all_received(expected, consumer)
        await consumer.stop()
        assert_absent(everything_written(producer, consumer), set(written))
    finally:
        await proxy.stop()


async def test_without_the_ca_a_clear_certificate_error_and_a_non_zero_exit(setup: Setup) -> None:
    producer_role, _ = await setup.roles()
    del setup.cluster.stream_env["STREAM_CA_BUNDLE"]
    producer = await setup.cluster.start_producer(
        STREAM_AUTH_TOKEN_FILE=str(setup.token_file("producer", setup.broker.token(producer_role)))
    )
    assert await producer.wait_exit(30) not in (0, None)
    text = "\n".join(producer.raw) + producer.stderr.decode()
    assert "could not be verified" in text and "STREAM_CA_BUNDLE" in text, text[-2000:]
    assert not producer.events("connected")
