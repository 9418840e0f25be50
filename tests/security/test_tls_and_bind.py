"""TLS end to end, and the broker's default bind.

- The producer and consumer processes over wss:// to the embedded broker serving a certificate
  from a private CA (trustme), with STREAM_CA_BUNDLE: messages flow.
- Without the bundle: a clear certificate error in the log, a non-zero exit, and never a
  fallback to plain text (a plain listener on the same port number would notice).
- The broker binds 127.0.0.1 unless told otherwise, and refuses another address without a token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trustme
from broker.settings import BrokerSettings

from harness import Cluster, Service, base_env, free_port


async def start_tls_broker(cluster: Cluster, tmp_path: Path) -> Path:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    broker = cluster.add(
        "broker",
        "broker",
        BROKER_PORT=str(cluster.broker_port),
        BROKER_DATA_DIR=str(tmp_path / "data"),
        BROKER_TLS_CERT=str(cert_file),
        BROKER_TLS_KEY=str(key_file),
    )
    cluster.broker = broker
    await broker.start()
    line = await broker.wait_for(lambda line: line.get("event") == "broker_listening")
    assert str(line["url"]).startswith("https://")
    return ca_file


async def test_services_over_wss_with_a_private_ca(cluster: Cluster, tmp_path: Path) -> None:
    ca_file = await start_tls_broker(cluster, tmp_path)
    env = {"STREAM_URL": f"wss://localhost:{cluster.broker_port}", "STREAM_CA_BUNDLE": str(ca_file)}
    consumer = await cluster.start_consumer("consumer-1", **env)
    await consumer.wait_for(lambda line: line.get("event") == "subscribed")
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS="0.05", **env)
    await consumer.wait_for(lambda line: line.get("event") == "received")
    for svc in (producer, consumer):
        urls = [str(line.get("url")) for line in svc.events("connected")]
        assert urls and all(u.startswith("wss://") for u in urls), urls
        await svc.wait_http("/readyz", lambda status, _: status == 200)


async def test_without_the_ca_bundle_a_clear_certificate_error_and_non_zero_exit(
    cluster: Cluster, tmp_path: Path
) -> None:
    await start_tls_broker(cluster, tmp_path)
    env = {"STREAM_URL": f"wss://localhost:{cluster.broker_port}", "RECONNECT_MAX_SECONDS": "0.2"}
    producer = await cluster.start_producer(**env)
    consumer = await cluster.start_consumer("consumer-1", **env)
    for svc in (producer, consumer):
        code = await svc.wait_exit(30)
        assert code not in (0, None), svc.name
        text = "\n".join(svc.raw) + svc.stderr.decode()
        assert "certificate" in text.lower() and "STREAM_CA_BUNDLE" in text, text[-2000:]
        assert "Traceback" not in svc.stderr.decode()
        assert not svc.events("connected")  # never fell back to an unverified or plain connection
        assert "ws://" not in text.replace("wss://", "")


async def test_the_services_never_downgrade_to_plain_text(tmp_path: Path) -> None:
    """A wss:// URL against a plain-text listener fails; the listener never sees a WebSocket upgrade."""
    port = free_port()
    seen: list[bytes] = []

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(4096))
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", port)
    svc = Service(
        "producer",
        "producer",
        base_env(
            STREAM_URL=f"wss://127.0.0.1:{port}", HTTP_PORT=str(free_port()), RECONNECT_MAX_SECONDS="0.2"
        ),
    )
    try:
        await svc.start()
        await svc.wait_for(lambda line: "retry_in" in line, timeout=30)  # every retry says when
        assert seen and all(b"GET " not in chunk and b"PUT " not in chunk for chunk in seen)
        assert all(chunk[:1] == b"\x16" for chunk in seen if chunk)  # TLS handshake records only
    finally:
        await svc.stop()
        server.close()


def test_broker_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BrokerSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    assert BrokerSettings().broker_host == "127.0.0.1"


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, read from the kernel (/proc/net):
    no packet is sent anywhere, so nothing but loopback is ever touched."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            next(f)
            for row in f:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port and len(address) == width:
                    found.add(address)
    return found


async def test_a_default_broker_listens_on_loopback_only(cluster: Cluster) -> None:
    broker = await cluster.start_broker()
    line = broker.events("broker_listening")[0]
    assert "127.0.0.1" in str(line["url"])
    # 0100007F is 127.0.0.1 in the kernel's byte order; 0.0.0.0 or any interface would show otherwise.
    assert listening_addresses(cluster.broker_port) == {"0100007F"}
