"""Secured brokers for tests and the chaos suite: token authentication, roles, TLS (issue #19).

`SecuredBroker` describes one, embedded or Pulsar, the same way: its https:// base, the private
CA that signed its certificate, the HS256 key its tokens are signed with and the superuser role;
it makes tokens and grants permissions through Pulsar's admin paths (both brokers have them).

- `tls_material(dir)`: a private CA (trustme) and a certificate for 127.0.0.1 and localhost,
  the key as PKCS#8 (Pulsar refuses trustme's SEC1 EC keys).
- `SecuredPulsar`: `scripts/pulsar-standalone` with PULSAR_AUTH=token and PULSAR_TLS_*, on free
  ports, its own cache directory, `authenticationRefreshCheckSeconds` 2 (so a test of an
  expired token on an open session outlasts Pulsar's re-authentication check).
- `start_embedded(cluster, material)`: the embedded broker as a process with the same key,
  superuser and certificate.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import trustme
from cryptography.hazmat.primitives import serialization

from harness.processes import Cluster, Service, free_port
from harness.pulsar import PulsarStandalone
from harness.tokens import hs256_token, new_secret_key

SUPERUSER = "admin"
#: Pulsar re-authenticates binary connections this often (its default is 60 s).
AUTH_REFRESH_SECONDS = 2


@dataclass(frozen=True)
class TlsMaterial:
    cert: Path  # certificate chain, PEM
    key: Path  # PKCS#8 private key, PEM
    ca: Path  # the private CA's certificate, PEM

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def tls_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    material = TlsMaterial(directory / "server.pem", directory / "server.key", directory / "ca.pem")
    material.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    material.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ca.cert_pem.write_to_path(str(material.ca))
    return material


@dataclass
class SecuredBroker:
    """A broker that wants tokens and checks roles, reached over TLS."""

    name: str  # "embedded" | "pulsar"
    https: str  # https://127.0.0.1:PORT: admin REST and, as wss://, the WebSocket API
    tls: TlsMaterial
    secret_key: bytes
    superuser: str = SUPERUSER
    #: pulsar+ssl:// with the same CA and tokens (Pulsar only: the embedded broker speaks WebSocket)
    binary_tls: str | None = None

    @property
    def wss(self) -> str:
        return "wss" + self.https.removeprefix("https")

    def token(self, role: str, expires_in: float | None = None) -> str:
        return hs256_token(self.secret_key, role, expires_in=expires_in)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(self.superuser)}"}

    def session(self) -> aiohttp.ClientSession:
        """A client session that trusts the private CA (fresh connections: see FINDINGS on keep-alive)."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls.client_context(), force_close=True)
        )

    async def admin(self, method: str, path: str, body: object = None) -> tuple[int, str]:
        """One admin call as the superuser."""
        async with self.session() as session:
            kwargs: dict[str, object] = {"headers": self.admin_headers}
            if body is not None:
                kwargs["json"] = body
            async with session.request(method, self.https + path, **kwargs) as response:  # type: ignore[arg-type]
                return response.status, await response.text()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the port answers (a log line may come just before the socket listens)."""
        await until_answers(self, timeout)

    async def grant(self, role: str, actions: list[str], namespace: str = "public/default") -> None:
        status, text = await self.admin(
            "POST", f"/admin/v2/namespaces/{namespace}/permissions/{role}", actions
        )
        assert status == 204, (status, text)

    async def grant_on_topic(
        self, topic: str, role: str, actions: list[str], namespace: str = "public/default"
    ) -> None:
        """A topic-level grant; Pulsar wants the topic to exist, so it is created first."""
        base = f"/admin/v2/persistent/{namespace}/{topic}"
        status, text = await self.admin("PUT", base, {})
        assert status in (204, 409), (status, text)
        status, text = await self.admin("POST", f"{base}/permissions/{role}", actions)
        assert status == 204, (status, text)


async def until_answers(broker: SecuredBroker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with broker.session() as session, session.get(broker.https + "/metrics") as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{broker.https} did not answer within {timeout} s")
        await asyncio.sleep(0.1)


class SecuredPulsar(PulsarStandalone):
    """A standalone with token authentication, authorization, a superuser and TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.web_tls_port = free_port()
        self.broker_tls_port = free_port()
        self.tls = tls_material(self.cache / "tls")
        self.env.update(
            PULSAR_AUTH="token",
            PULSAR_SUPERUSER=SUPERUSER,
            PULSAR_AUTH_REFRESH_SECONDS=str(AUTH_REFRESH_SECONDS),
            PULSAR_TLS_CERT=str(self.tls.cert),
            PULSAR_TLS_KEY=str(self.tls.key),
            PULSAR_TLS_CA=str(self.tls.ca),
            PULSAR_WEB_TLS_PORT=str(self.web_tls_port),
            PULSAR_BROKER_TLS_PORT=str(self.broker_tls_port),
        )

    @property
    def binary_tls_url(self) -> str:
        """pulsar+ssl:// for the binary transport's tests (the same CA and tokens)."""
        return f"pulsar+ssl://127.0.0.1:{self.broker_tls_port}"

    def secured(self) -> SecuredBroker:
        key = (self.cache / "auth" / "secret.key").read_bytes()  # made by Pulsar's tokens tool at start
        https = f"https://127.0.0.1:{self.web_tls_port}"
        return SecuredBroker("pulsar", https, self.tls, key, binary_tls=self.binary_tls_url)


def embedded_env(material: TlsMaterial, secret_key: bytes) -> dict[str, str]:
    """The embedded broker's settings for the same setup (tokens, superuser, TLS)."""
    return {
        "BROKER_TOKEN_SECRET_KEY": "data:;base64," + base64.b64encode(secret_key).decode(),
        "BROKER_SUPERUSER_ROLES": SUPERUSER,
        "BROKER_TLS_CERT": str(material.cert),
        "BROKER_TLS_KEY": str(material.key),
    }


async def start_embedded(cluster: Cluster, directory: Path, **env: str) -> tuple[Service, SecuredBroker]:
    """The embedded broker as a process of `cluster`, secured; its WebSocket URL becomes the
    cluster's STREAM_URL and the CA its STREAM_CA_BUNDLE."""
    material = tls_material(directory / "tls")
    key = new_secret_key()
    broker = cluster.add(
        "broker",
        "broker",
        BROKER_PORT=str(cluster.broker_port),
        BROKER_DATA_DIR=str(directory / "broker"),
        **embedded_env(material, key),
        **env,
    )
    cluster.broker = broker
    await broker.start()
    await broker.wait_for(lambda line: line.get("event") == "broker_listening")
    secured = SecuredBroker("embedded", f"https://127.0.0.1:{cluster.broker_port}", material, key)
    await secured.wait_ready()
    cluster.stream_env.update(STREAM_URL=secured.wss, STREAM_CA_BUNDLE=str(material.ca))
    return broker, secured
