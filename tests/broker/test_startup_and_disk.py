"""The broker says it listens only once it does, and a full disk is reported as such (issue #12)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from broker.storage import Store, WriteBatch

from tests.broker.conftest import run_main


def test_a_taken_port_gives_one_line_and_no_listening_claim(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_main(
            {"BROKER_PORT": str(port), "BROKER_DATA_DIR": str(tmp_path / "d"), "LOG_FORMAT": "json"}
        )
    assert result.returncode == 1
    assert "broker_listening" not in result.stdout  # it never claimed to listen
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.stderr


def test_help_and_unknown_arguments(tmp_path: Path) -> None:
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "broker", "--help"], capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0 and "BROKER_DATA_DIR" in shown.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "broker", "--port", "1"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    del tmp_path


def test_a_full_disk_is_named_not_hidden_by_a_failed_rollback(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    # SQLite's own ceiling on the file size stands in for a full disk: the same SQLITE_FULL error.
    store._db.execute("PRAGMA max_page_count = 64")
    batch = WriteBatch(messages=[(i, 0, None, None, b"x" * 4000, 0, 0) for i in range(1, 200)])
    with pytest.raises(sqlite3.OperationalError) as info:
        store.write(batch)
    assert "full" in str(info.value)  # not "cannot rollback - no transaction is active"
    assert not store._db.in_transaction
