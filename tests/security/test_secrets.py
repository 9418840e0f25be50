"""Secrets never leave the process: not in logs, /status, /metrics, nor in error messages.

The services and the broker run with known secret values; a recording proxy between them
captures the one-time passwords the services actually obtained and used. Then every byte they
wrote (stdout, stderr) and every answer of every endpoint is searched for the secrets and the
OTPs. Covered: Macrometa mode (API key -> OTP per WebSocket attempt), Pulsar token mode, a
wrong API key (the 401 path, where error messages are built from the broker's refusal), and
roles mode (a signing key, JWTs from files, expired, forged and under-privileged ones, the publish
API's token from a file).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.chaos_proxy import FaultProxy
from harness import Cluster, Service
from harness.secured import embedded_env, start_embedded
from harness.tokens import hs256_token, new_secret_key
from tests.conformance.conftest import unique

API_KEY = "demo_tenant.streampair-key.QXBpS2V5U2VjcmV0LTk4NzY1"
KEY_SECRET_PART = API_KEY.rsplit(".", 1)[-1]
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.U0VDUkVULVRPS0VOLVNJRw"
WRONG_KEY = "demo_tenant.wrong-key.V1JPTkdLRVlTRUNSRVQ"
ENDPOINTS = ["/livez", "/readyz", "/status", "/metrics", "/nope"]
BROKER_ENDPOINTS = ["/admin/v2/brokers/health", "/metrics", "/admin/v2/persistent/public/default"]


@pytest.fixture
async def proxy(cluster: Cluster) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(cluster.broker_port)
    p.recorded = bytearray()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def http_bodies(svc: Service, paths: list[str], auth: str | None = None) -> list[str]:
    out = []
    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(svc.url + path, headers=headers) as r:
                out.append(f"{path} {r.status} {dict(r.headers)} {await r.text()}")
    return out


def otps_used(proxy: FaultProxy) -> set[str]:
    return set(re.findall(rb"[?&]otp=([A-Za-z0-9_\-%]+)", bytes(proxy.recorded or b"")))  # type: ignore[arg-type]


def everything_written(*services: Service) -> str:
    return "\n".join("\n".join(s.raw) + "\n" + s.stderr.decode(errors="replace") for s in services)


def macrometa_env(port: int, api_key: str, **extra: str) -> dict[str, str]:
    """A service's settings for Macrometa mode on 127.0.0.1:port, logging at debug (the most it writes)."""
    return {
        "STREAM_BACKEND": "macrometa",
        "STREAM_URL": f"http://127.0.0.1:{port}",
        "C8_API_KEY": api_key,
        "LOG_LEVEL": "debug",
        **extra,
    }


def assert_absent(haystack: str, needles: set[str]) -> None:
    for needle in needles:
        assert needle and needle not in haystack, f"secret {needle[:6]}... leaked"


async def test_macrometa_api_key_and_otps_never_leak(cluster: Cluster, proxy: FaultProxy) -> None:
    broker = await cluster.start_broker(BROKER_AUTH_TOKEN=API_KEY, LOG_LEVEL="debug")
    env = macrometa_env(proxy.port, API_KEY, RECONNECT_MAX_SECONDS="0.3", STANDBY_RETRY_SECONDS="0.2")
    c1 = await cluster.start_consumer("consumer-1", **env)
    await c1.wait_for(lambda line: line.get("event") == "subscribed")
    c2 = await cluster.start_consumer("consumer-2", **env)  # refused: more OTPs, retried
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.05", **env)
    await c1.wait_for(lambda line: line.get("event") == "received")
    await c2.wait_for(lambda line: line.get("event") == "subscription_busy")
    await asyncio.sleep(1.0)  # a few standby retries, each with a fresh OTP
    proxy.drop()  # reconnects: yet more OTPs
    await c1.wait_for(lambda line: line.get("event") == "received", start=len(c1.lines))
    bodies = []
    for svc in (producer, c1, c2):
        bodies += await http_bodies(svc, ENDPOINTS)
    bodies += await http_bodies(broker, BROKER_ENDPOINTS, auth=f"apikey {API_KEY}")
    otps = {o.decode() for o in otps_used(proxy)}
    assert len(otps) >= 4, "the services should have used several one-time passwords"
    await cluster.stop()
    haystack = everything_written(broker, producer, c1, c2) + "\n".join(bodies)
    assert_absent(haystack, {API_KEY, KEY_SECRET_PART, *otps})


async def test_pulsar_token_never_leaks(cluster: Cluster, proxy: FaultProxy) -> None:
    broker = await cluster.start_broker(BROKER_AUTH_TOKEN=TOKEN, LOG_LEVEL="debug")
    env = {
        "STREAM_URL": f"ws://127.0.0.1:{proxy.port}",
        "STREAM_AUTH_TOKEN": TOKEN,
        "LOG_LEVEL": "debug",
        "RECONNECT_MAX_SECONDS": "0.3",
    }
    consumer = await cluster.start_consumer("consumer-1", **env)
    await consumer.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.05", **env)
    await consumer.wait_for(lambda line: line.get("event") == "received")
    assert TOKEN.encode() in bytes(proxy.recorded or b"")  # it was really sent
    bodies = []
    for svc in (producer, consumer):
        bodies += await http_bodies(svc, ENDPOINTS)
    bodies += await http_bodies(broker, BROKER_ENDPOINTS, auth=f"Bearer {TOKEN}")
    await cluster.stop()
    assert_absent(everything_written(broker, producer, consumer) + "\n".join(bodies), {TOKEN})


async def test_a_wrong_api_key_fails_without_printing_either_key(cluster: Cluster) -> None:
    broker = await cluster.start_broker(BROKER_AUTH_TOKEN=API_KEY, LOG_LEVEL="debug")
    env = macrometa_env(cluster.broker_port, WRONG_KEY)
    producer = await cluster.start_producer(**env)
    consumer = await cluster.start_consumer("consumer-1", **env)
    status_seen = []
    for svc in (producer, consumer):
        # They stay up (a rotated key would fix it), not ready, and say why: which setting, which status.
        body = await svc.wait_http(
            "/readyz", lambda status, body: status == 503 and "C8_API_KEY" in str(body)
        )
        assert "401" in body["reason"], body
        status_seen += await http_bodies(svc, ENDPOINTS)
        assert await svc.metric("streampair_connection_attempts_total", 'result="unauthenticated"') >= 1
    await cluster.stop()
    written = everything_written(broker, producer, consumer)
    assert "401" in written or "nauthorized" in written  # the refusal is reported...
    assert_absent(written + "\n".join(status_seen), {WRONG_KEY, WRONG_KEY.rsplit(".", 1)[-1], API_KEY})


async def test_roles_mode_keys_and_tokens_never_leak_even_when_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    """BROKER_TOKEN_SECRET_KEY and JWTs (issue #19): a granted producer, a consumer whose token
    expires and is refused, one signed with another key, an under-privileged one; debug logs."""
    broker, secured = await start_embedded(cluster, tmp_path, LOG_LEVEL="debug")
    producer_role, consumer_role = unique("producer-role"), unique("consumer-role")
    await secured.grant(producer_role, ["produce"])
    await secured.grant(consumer_role, ["consume"])
    tokens = {
        "producer": secured.token(producer_role),
        "consumer": secured.token(consumer_role, expires_in=8),
        "forged": hs256_token(new_secret_key(), consumer_role),
        "under-privileged": secured.token(producer_role),
        "http": "publish-api-S3CRET",
    }
    expired_at = time.monotonic() + 8
    files = {}
    for name, token in tokens.items():
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(token + "\n")
    env = {"LOG_LEVEL": "debug", "RECONNECT_MAX_SECONDS": "0.3"}
    consumer = await cluster.start_consumer(
        "consumer-1", STREAM_AUTH_TOKEN_FILE=str(files["consumer"]), **env
    )
    await consumer.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(
        STREAM_AUTH_TOKEN_FILE=str(files["producer"]),
        HTTP_AUTH_TOKEN_FILE=str(files["http"]),
        PUBLISH_INTERVAL_SECONDS="0.05",
        **env,
    )
    await consumer.wait_for(lambda line: line.get("event") == "received")
    refused = [
        await cluster.start_consumer(f"consumer-{name}", STREAM_AUTH_TOKEN_FILE=str(files[name]), **env)
        for name in ("forged", "under-privileged")
    ]
    for svc in refused:
        await svc.wait_http(
            "/readyz", lambda status, body: status == 503 and "STREAM_AUTH_TOKEN_FILE" in str(body)
        )
    # Once the consumer's token has expired, a reconnect is refused with 401 (a deadline, no event).
    await asyncio.sleep(max(0.0, expired_at - time.monotonic()) + 0.5)
    broker.signal(signal.SIGKILL)  # drops every connection; the restarted broker has the grants
    await broker.wait_exit(10)
    await broker.start()
    await consumer.wait_http("/readyz", lambda status, body: status == 503 and "401" in str(body), timeout=30)
    async with aiohttp.ClientSession() as session:
        for authorization in (None, "Bearer wrong", f"Bearer {tokens['http']}"):
            headers = {"Authorization": authorization} if authorization else {}
            async with session.post(producer.url + "/messages", json={"payload": "x"}, headers=headers) as r:
                await r.read()
    bodies = []
    for svc in (producer, consumer, *refused):
        bodies += await http_bodies(svc, ENDPOINTS)
    await cluster.stop()
    key = embedded_env(secured.tls, secured.secret_key)["BROKER_TOKEN_SECRET_KEY"]
    needles = {
        key,
        key.removeprefix("data:;base64,"),
        secured.secret_key.hex(),
        secured.token(secured.superuser),
    }
    needles |= set(tokens.values()) | {token.rsplit(".", 1)[-1] for token in tokens.values() if "." in token}
    assert_absent(everything_written(broker, producer, consumer, *refused) + "\n".join(bodies), needles)
