"""The command: configuration refusals (exit 2, one line), TLS, the data-directory lock."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from broker.testing import running_broker

from tests.broker.conftest import BrokerProcess, publish, run_main, ws_url


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streampair-broker: ")
    return lines[0]


def test_public_bind_without_token_is_refused(tmp_path: Path) -> None:
    line = one_line_exit_2(run_main({"BROKER_HOST": "0.0.0.0", "BROKER_DATA_DIR": str(tmp_path)}))
    assert "BROKER_HOST" in line and "BROKER_AUTH_TOKEN" in line


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BROKER_PORT": "eighty"}, "BROKER_PORT"),
        ({"BROKER_PORT": "70000"}, "BROKER_PORT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"BROKER_SYNC": "sometimes"}, "BROKER_SYNC"),
        ({"BROKER_TLS_CERT": "/nonexistent.pem"}, "BROKER_TLS_CERT"),
        ({"BROKER_AUTH_TOKEN": "  "}, "BROKER_AUTH_TOKEN"),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    line = one_line_exit_2(run_main({"BROKER_DATA_DIR": str(tmp_path), **env}))
    assert variable in line


def test_token_is_never_printed(tmp_path: Path) -> None:
    secret = "do-not-print-me"
    result = run_main({"BROKER_AUTH_TOKEN": secret, "BROKER_PORT": "-1", "BROKER_DATA_DIR": str(tmp_path)})
    one_line_exit_2(result)
    assert secret not in result.stderr + result.stdout


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    line = one_line_exit_2(run_main({"BROKER_TLS_CERT": str(cert), "BROKER_DATA_DIR": str(tmp_path)}))
    assert "BROKER_TLS" in line


async def test_public_bind_with_explicit_opt_out_starts(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    broker = broker_process(BROKER_HOST="0.0.0.0", BROKER_ALLOW_UNAUTHENTICATED="true")
    await broker.start()
    assert broker.terminate() == 0


async def test_a_second_broker_on_the_same_data_dir_is_refused(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    broker = broker_process()
    await broker.start()
    line = one_line_exit_2(run_main({"BROKER_DATA_DIR": str(broker.data_dir), "BROKER_PORT": "0"}))
    assert "BROKER_DATA_DIR" in line and "in use" in line


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_serves_https_and_wss(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    async with running_broker(tmp_path / "data", tls=certificate) as base, aiohttp.ClientSession() as session:
        assert base.startswith("https://")
        async with session.get(base + "/admin/v2/brokers/health", ssl=context) as r:
            assert r.status == 200
        producer = await session.ws_connect(
            ws_url(base, "/ws/v2/producer/persistent/public/default/t"), ssl=context
        )
        await publish(producer, "over tls")
