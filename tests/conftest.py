"""Fixtures shared by every suite: loopback servers that stop by themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from harness import Cluster, serve_app


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
