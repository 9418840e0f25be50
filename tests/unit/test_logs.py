"""Structured logs: JSON with tracebacks that never carry local variables (they may hold secrets)."""

from __future__ import annotations

import json
import logging

import pytest
from streampair.logs import configure_logging, get_logger


def _fail_with_a_secret_in_scope() -> None:
    headers = {"Authorization": "apikey TOPSECRET-KEY"}
    raise ValueError(f"boom with {len(headers)} header")


@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_json_tracebacks_have_no_locals(capsys: pytest.CaptureFixture[str], source: str) -> None:
    configure_logging("test", "info", "json")
    try:
        _fail_with_a_secret_in_scope()
    except ValueError:
        if source == "structlog":
            get_logger("t").exception("failed")
        else:
            logging.getLogger("aiohttp.server").exception("failed")
    out = capsys.readouterr().out
    assert "TOPSECRET" not in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["event"] == "failed" and line["service"] == "test" and line["level"] == "error"
    assert line["exception"][0]["exc_type"] == "ValueError"


def test_known_secret_keys_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "info", "json")
    get_logger("t").info("oops", otp="123456", token="abc", api_key="k")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (line["otp"], line["token"], line["api_key"]) == ("***", "***", "***")


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "warning", "json")
    get_logger("t").info("hidden")
    get_logger("t").warning("shown")
    out = capsys.readouterr().out
    assert "hidden" not in out and "shown" in out
