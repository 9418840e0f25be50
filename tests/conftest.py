"""Fixtures shared by every suite: loopback servers that stop by themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from tests.harness import Cluster


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 on a free port; yield its http:// base URL."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def serve() -> Callable[[web.Application], object]:
    return serve_app


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Processes of ours on loopback (broker, producers, consumers), all stopped after the test."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop()
