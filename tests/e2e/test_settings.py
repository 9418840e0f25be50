"""A bad setting stops each service at once: status 2, one line, no traceback, no secret."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import ROOT, base_env


@pytest.mark.parametrize(
    ("module", "variable", "value", "fragment"),
    [
        ("producer", "PUBLISH_INTERVAL_SECONDS", "-1", "PUBLISH_INTERVAL_SECONDS"),
        ("producer", "HTTP_PORT", "70000", "HTTP_PORT"),
        ("consumer", "SUBSCRIPTION_TYPE", "Exclusiv", "SUBSCRIPTION_TYPE: expected one of"),
        ("consumer", "ON_BUSY", "crash", "ON_BUSY: expected one of 'standby' or 'exit'"),
        ("consumer", "STANDBY_RETRY_SECONDS", "0", "STANDBY_RETRY_SECONDS"),
        ("broker", "BROKER_PORT", "http", "BROKER_PORT"),
    ],
)
def test_bad_setting_exits_2_with_one_line(module: str, variable: str, value: str, fragment: str) -> None:
    env = base_env(**{variable: value, "C8_API_KEY": "tenant.key.TOPSECRET"})
    proc = subprocess.run(
        [sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr and "TOPSECRET" not in proc.stderr + proc.stdout
