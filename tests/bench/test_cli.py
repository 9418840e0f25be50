"""`python -m bench` and `python -m bench.chaos` answer --help without starting a run, and refuse
what they do not know with status 2 (a run takes minutes: a typo must not start one)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("module", "mentions"), [("bench", "BENCH_QUICK"), ("bench.chaos", "pulsar_sigkill_binary")]
)
def test_help_prints_the_settings_and_starts_nothing(module: str, mentions: str) -> None:
    done = run(module, "--help")
    assert done.returncode == 0, done.stderr
    assert mentions in done.stdout
    assert "run time" not in done.stdout and "in all; results" not in done.stdout


@pytest.mark.parametrize(("module", "argument"), [("bench", "--quick"), ("bench.chaos", "no_such_scenario")])
def test_an_unknown_argument_exits_2(module: str, argument: str) -> None:
    done = run(module, argument)
    assert done.returncode == 2
    assert "unknown" in done.stdout
