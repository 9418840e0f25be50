"""`make demo` (scripts/demo.py): it runs the story, stops on Ctrl-C, and refuses a busy port clearly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from harness import ROOT, free_port
from scripts.demo import port_in_use


async def run_demo(tmp_path: Path, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        env={**os.environ, "BROKER_DATA_DIR": str(tmp_path / "broker"), "LOG_FORMAT": "json", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


def http_base() -> int:
    """Three free consecutive ports for the demo's services."""
    while True:
        base = free_port()
        if not any(port_in_use(base + i) for i in (1, 2)):
            return base


async def test_the_demo_runs_the_story_and_stops_cleanly(tmp_path: Path) -> None:
    proc = await run_demo(tmp_path, DEMO_BROKER_PORT=str(free_port()), DEMO_HTTP_PORT=str(http_base()))
    assert proc.stdout is not None
    seen: set[str] = set()
    async with asyncio.timeout(60):
        async for raw in proc.stdout:
            line = raw.decode()
            for marker in ('"subscribed"', '"subscription_busy"', '"published"', '"received"'):
                if marker in line:
                    seen.add(marker)
            if len(seen) == 4:
                break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    rest = await asyncio.wait_for(proc.stdout.read(), 30)
    assert await proc.wait() == 0
    assert b"demo stopped" in rest


async def test_a_busy_port_stops_the_demo_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = await run_demo(tmp_path, DEMO_BROKER_PORT=str(port), DEMO_HTTP_PORT=str(http_base()))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"make demo: port {port} on 127.0.0.1 is in use; stop what holds it, or pick another with "
        "DEMO_BROKER_PORT=... make demo"
    ]
    assert not out
