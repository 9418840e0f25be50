"""Every setting of producer, consumer and broker with a wrong value: exit status 2, one line.

The table below must name every field of every settings class (a test checks that), so a new
setting cannot ship without a wrong-value case. Most cases run `load_settings` in-process (what
each `__main__` calls first); the broker's checks that come after it (TLS pair, TLS files that
do not load, an unusable data directory) and one case per service run the real command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from broker.settings import BrokerSettings
from consumer.settings import ConsumerSettings
from producer.settings import ProducerSettings
from pydantic_settings import BaseSettings
from streampair.settings import ServiceSettings, load_settings

from harness import ROOT, base_env

SECRET = "tenant.key.S3CRET-VALUE"
NOT_PEM = str(Path(__file__))  # a readable file that is not PEM

# (variable, wrong value) for the settings every stream service shares.
SHARED: list[tuple[str, str]] = [
    ("STREAM_BACKEND", "kafka"),
    ("STREAM_URL", "ftp://localhost"),
    ("STREAM_URL", "ws://"),
    ("STREAM_URL", "ws://localhost:99999"),
    ("STREAM_URL", "pulsar://user:pw@pulsar:6650"),
    ("STREAM_ADMIN_URL", "ftp://pulsar:8080"),
    ("STREAM_ADMIN_URL", "http://pulsar:8080?token=x"),
    ("STREAM_NAME", "bad name/with slash"),
    ("STREAM_NAME", ".."),
    ("STREAM_TENANT", "a/b"),
    ("STREAM_NAMESPACE", ""),
    ("C8_FABRIC", "fab ric"),
    ("C8_API_KEY", "key with space"),
    ("STREAM_GLOBAL", "perhaps"),
    ("STREAM_AUTH_TOKEN", "tok\x01en"),
    ("STREAM_CA_BUNDLE", "/nonexistent/ca.pem"),
    ("STREAM_CA_BUNDLE", NOT_PEM),
    ("STREAM_MAX_FRAME_BYTES", "100"),
    ("OTEL_TRACES_EXPORTER", "jaeger"),
    ("STREAM_AUTH_TOKEN_FILE", "/nonexistent/token"),
    ("C8_API_KEY_FILE", NOT_PEM),  # a file, but not one secret: it holds spaces
    ("HTTP_PORT", "0"),
    ("HTTP_PORT", "http"),
    ("HTTP_HOST", "not a host"),
    ("HTTP_HOST", "999.1.1.1"),
    ("LOG_LEVEL", "loud"),
    ("LOG_FORMAT", "xml"),
    ("HEARTBEAT_SECONDS", "0"),
    ("CONNECT_TIMEOUT_SECONDS", "-1"),
    ("RECONNECT_MAX_SECONDS", "soon"),
    ("SHUTDOWN_TIMEOUT_SECONDS", "99999"),
]
PRODUCER: list[tuple[str, str]] = [
    ("HTTP_AUTH_TOKEN", "two words"),
    ("HTTP_AUTH_TOKEN_FILE", "/nonexistent/token"),
    ("PUBLISH_INTERVAL_SECONDS", "-0.5"),
    ("PRODUCER_ID", ""),
    ("MAX_IN_FLIGHT", "0"),
    ("SEND_TIMEOUT_SECONDS", "0"),
]
CONSUMER: list[tuple[str, str]] = [
    ("SUBSCRIPTION_NAME", "sub scription"),
    ("SUBSCRIPTION_TYPE", "exclusive"),
    ("STANDBY_RETRY_SECONDS", "0"),
    ("ON_BUSY", "crash"),
    ("CONSUMER_NAME", ""),
    ("RECEIVER_QUEUE_SIZE", "1001"),
    ("PRIORITY_LEVEL", "-1"),
    ("LOG_PAYLOADS", "sometimes"),
    ("MAX_DELIVERY_ATTEMPTS", "-1"),
    ("DEAD_LETTER_STREAM", ".."),
    ("RETRY_DELAY_SECONDS", "0"),
    ("RETRY_MAX_DELAY_SECONDS", "never"),
    ("FAIL_ON_PROPERTY", "two words"),
]
BROKER: list[tuple[str, str]] = [
    ("BROKER_AUTH_TOKEN", "   "),
    ("BROKER_TOKEN_SECRET_KEY", "the-key-itself"),  # not file:// nor data:;base64, (never echoed)
    ("BROKER_TOKEN_SECRET_KEY", "file:///nonexistent/secret.key"),
    ("BROKER_TOKEN_SECRET_KEY", "data:;base64,c2hvcnQ="),  # 5 bytes: HS256 wants at least 32
    ("BROKER_SUPERUSER_ROLES", "admin,two words"),
    ("BROKER_ALLOW_UNAUTHENTICATED", "perhaps"),
    ("BROKER_PORT", "-1"),
    ("BROKER_MAX_FRAME_BYTES", "10"),
    ("BROKER_MAX_PENDING_PER_PRODUCER", "0"),
    ("BROKER_RETENTION_MESSAGES", "-5"),
    ("BROKER_SYNC", "sometimes"),
    ("BROKER_OTP_TTL_SECONDS", "0"),
    ("BROKER_SHUTDOWN_TIMEOUT_SECONDS", "61"),
    ("BROKER_HEARTBEAT_SECONDS", "0"),
    ("BROKER_TLS_CERT", "/nonexistent/cert.pem"),
    ("BROKER_TLS_KEY", "/nonexistent/key.pem"),
    ("LOG_LEVEL", "loud"),
    ("LOG_FORMAT", "xml"),
    ("BROKER_HOST", "0.0.0.0"),  # beyond loopback without a token
    ("BROKER_HOST", " "),
]
# Checked by the broker command after the settings load (see test_broker_command_checks).
BROKER_COMMAND = {"BROKER_DATA_DIR", "BROKER_TLS_CERT", "BROKER_TLS_KEY"}

CASES = (
    [(ProducerSettings, "producer", v, x) for v, x in SHARED + PRODUCER]
    + [(ConsumerSettings, "consumer", v, x) for v, x in SHARED + CONSUMER]
    + [(BrokerSettings, "broker", v, x) for v, x in BROKER]
)


def clean_env(monkeypatch: pytest.MonkeyPatch, cls: type[BaseSettings]) -> None:
    for name in cls.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("C8_API_KEY", SECRET)  # present in every case: it must never be printed
    monkeypatch.setenv("BROKER_DATA_DIR", "/tmp/unused")


@pytest.mark.parametrize(("cls", "service", "variable", "value"), CASES)
def test_a_wrong_value_exits_2_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cls: type[BaseSettings],
    service: str,
    variable: str,
    value: str,
) -> None:
    clean_env(monkeypatch, cls)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as info:
        load_settings(cls, f"streampair-{service}", argv=[])
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"streampair-{service}: invalid setting {variable}"), lines[0]
    assert SECRET not in err
    if variable in ("C8_API_KEY", "STREAM_AUTH_TOKEN", "BROKER_AUTH_TOKEN", "BROKER_TOKEN_SECRET_KEY"):
        assert value.strip() == "" or value not in err  # never echo a secret's value


@pytest.mark.parametrize(
    ("cls", "table"),
    [(ProducerSettings, SHARED + PRODUCER), (ConsumerSettings, SHARED + CONSUMER), (BrokerSettings, BROKER)],
)
def test_the_table_covers_every_setting(cls: type[BaseSettings], table: list[tuple[str, str]]) -> None:
    covered = {variable for variable, _ in table}
    if cls is BrokerSettings:
        covered |= BROKER_COMMAND
    assert {name.upper() for name in cls.model_fields} <= covered
    assert {name.upper() for name in ServiceSettings.model_fields} <= covered or cls is BrokerSettings


def run(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env=base_env(C8_API_KEY=SECRET, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_2(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("module", "variable", "value"),
    [
        ("producer", "HTTP_HOST", "not a host"),
        ("consumer", "STREAM_CA_BUNDLE", NOT_PEM),
        ("producer", "STREAM_AUTH_TOKEN", "two words"),
    ],
)
def test_the_real_commands(module: str, variable: str, value: str) -> None:
    one_line_2(run(module, **{variable: value}), variable)


def test_broker_command_checks(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    one_line_2(run("broker", BROKER_DATA_DIR=str(a_file / "sub")), "BROKER_DATA_DIR")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    data = str(tmp_path / "data")
    one_line_2(
        run("broker", BROKER_DATA_DIR=data, BROKER_TLS_CERT=str(garbage), BROKER_TLS_KEY=str(garbage)),
        "BROKER_TLS_CERT",
    )
    one_line_2(run("broker", BROKER_DATA_DIR=data, BROKER_TLS_KEY=str(garbage)), "BROKER_TLS")


BINARY = {"STREAM_URL": "pulsar://pulsar:6650", "STREAM_ADMIN_URL": "http://pulsar:8080"}


@pytest.mark.parametrize(
    ("env", "words"),
    [
        # a remote broker's admin API cannot be guessed from its binary URL
        ({"STREAM_URL": "pulsar://pulsar:6650"}, "STREAM_ADMIN_URL is required"),
        ({"STREAM_URL": "pulsar+ssl://pulsar:6651"}, "STREAM_ADMIN_URL is required"),
        ({**BINARY, "PRIORITY_LEVEL": "1"}, "PRIORITY_LEVEL is not available with a pulsar:// STREAM_URL"),
        ({**BINARY, "STREAM_BACKEND": "macrometa"}, "Macrometa speaks only the WebSocket API"),
    ],
)
def test_what_the_binary_transport_cannot_do_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], words: str
) -> None:
    clean_env(monkeypatch, ConsumerSettings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        load_settings(ConsumerSettings, "streampair-consumer", argv=[])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines


@pytest.mark.parametrize(
    ("url", "admin"),
    [
        ("pulsar://127.0.0.1:6650", "http://127.0.0.1:8080"),  # loopback: Pulsar's default port
        ("pulsar+ssl://localhost:6651", "https://localhost:8443"),
        ("ws://pulsar:8080", None),  # the WebSocket API: REST on the same host
    ],
)
def test_the_admin_url_is_derived_for_loopback_only(
    monkeypatch: pytest.MonkeyPatch, url: str, admin: str | None
) -> None:
    clean_env(monkeypatch, ConsumerSettings)
    monkeypatch.setenv("STREAM_URL", url)
    config = load_settings(ConsumerSettings, "streampair-consumer", argv=[]).client_config()
    assert config.admin_url == admin
    assert config.binary is url.startswith("pulsar")
