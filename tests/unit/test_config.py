import subprocess
import sys

import pytest
from consumer.settings import ConsumerSettings
from streampair.settings import ServiceSettings, format_validation_error, load_settings


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ConsumerSettings()
    assert s.stream_backend == "pulsar"
    assert s.stream_url == "ws://localhost:8080"
    assert s.stream_name == "streamQuickstart"
    assert (s.stream_tenant, s.stream_namespace, s.c8_fabric) == ("public", "default", "_system")
    assert s.subscription_name == "consumer-subscription"
    assert s.subscription_type == "Exclusive"
    assert s.http_port == 8000
    assert s.stream_global is True


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSCRIPTION_TYPE", "Key_Shared")
    monkeypatch.setenv("STREAM_GLOBAL", "false")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    s = ConsumerSettings()
    assert s.subscription_type == "Key_Shared"
    assert s.stream_global is False
    assert s.log_level == "debug"
    assert s.log_format == "json"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "SUBSCRIPTION_TYPE",
            "exclusive",
            "SUBSCRIPTION_TYPE: expected one of 'Exclusive', 'Shared', 'Failover'",
        ),
        ("HTTP_PORT", "0", "HTTP_PORT"),
        ("HTTP_PORT", "abc", "HTTP_PORT"),
        ("STREAM_BACKEND", "kafka", "STREAM_BACKEND: expected one of 'pulsar' or 'macrometa'"),
        ("STREAM_URL", "ftp://x", "STREAM_URL: must start with pulsar://, pulsar+ssl://, ws://"),
        ("STREAM_GLOBAL", "perhaps", "STREAM_GLOBAL"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        (
            "STREAM_CA_BUNDLE",
            "/nonexistent/ca.pem",
            "STREAM_CA_BUNDLE: must be the path of a readable PEM file",
        ),
        ("STREAM_NAME", "a/b", "STREAM_NAME: may hold only letters, digits, '_' and '-' and '.'"),
        ("STREAM_NAME", "..", "STREAM_NAME: must not be only dots"),
        ("STREAM_NAME", ".", "STREAM_NAME: must not be only dots"),
        ("STREAM_NAMESPACE", "..", "STREAM_NAMESPACE: must not be only dots"),
    ],
)
def test_a_wrong_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ConsumerSettings, "streampair-test", argv=[])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("streampair-test: invalid setting ")
    assert expected in err


def test_describe_says_a_secret_is_set_without_its_value() -> None:
    described = ServiceSettings(c8_api_key="tenant.key.id.s3cr3t-value").describe()  # type: ignore[arg-type]
    assert described["c8_api_key"] == "set"
    assert described["stream_auth_token"] is None
    assert "s3cr3t" not in repr(described)


def test_secret_validation_error_hides_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr, ValidationError, field_validator

    class Strict(ServiceSettings):
        @field_validator("stream_auth_token")
        @classmethod
        def _len(cls, v: SecretStr | None) -> SecretStr | None:
            if v is not None and len(v.get_secret_value()) < 100:
                raise ValueError("too short")
            return v

    monkeypatch.setenv("STREAM_AUTH_TOKEN", "tok-s3cr3t")
    with pytest.raises(ValidationError) as info:
        Strict()
    line = format_validation_error(Strict, info.value)
    assert "STREAM_AUTH_TOKEN: too short" in line
    assert "s3cr3t" not in line


def test_entrypoint_exit_status_is_2_without_traceback() -> None:
    code = (
        "from consumer.settings import ConsumerSettings as C; "
        "from streampair.settings import load_settings; load_settings(C, 'svc')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"SUBSCRIPTION_TYPE": "Bogus", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("url", ["wss://user:hunter2@broker:8443", "ws://broker:8080/?token=hunter2"])
def test_credentials_in_the_url_are_refused_and_not_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    monkeypatch.setenv("STREAM_URL", url)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings, "svc", argv=[])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "STREAM_URL: must not carry credentials" in err and "hunter2" not in err


def test_a_misspelt_variable_is_named_with_what_was_meant() -> None:
    environ = {
        "SUBSCRIPTON_TYPE": "Shared",
        "STREAM_URL": "ws://x:1",
        "HTTP_PROXY": "http://proxy",
        "PATH": "/bin",
    }
    assert ConsumerSettings.misspelt_variables(environ) == {"SUBSCRIPTON_TYPE": "SUBSCRIPTION_TYPE"}


def test_help_lists_the_settings_and_unknown_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(ConsumerSettings, "streampair-consumer", argv=["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "SUBSCRIPTION_TYPE" in out and "default: Exclusive" in out and "C8_API_KEY" in out
    with pytest.raises(SystemExit) as info:
        load_settings(ConsumerSettings, "streampair-consumer", argv=["--port", "9"])
    assert info.value.code == 2
    assert "unrecognized arguments: --port 9" in capsys.readouterr().err
