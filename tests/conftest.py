"""Fixtures shared by every suite: loopback servers that stop by themselves, and the session's
real Apache Pulsar for the tests marked `pulsar` (one for tests/conformance and tests/binary)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from harness import Cluster, serve_app
from harness.pulsar import PulsarEndpoints, pulsar_endpoints
from harness.secured import SecuredBroker, SecuredPulsar


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


@pytest.fixture(scope="session")
def secured_pulsar() -> Iterator[SecuredBroker]:
    """A real Pulsar with token authentication, authorization and TLS for the whole session;
    started (and stopped) only if a test asks for it (`make test-pulsar`)."""
    standalone = SecuredPulsar()
    try:
        standalone.start()
        yield standalone.secured()
    finally:
        standalone.stop()


@pytest.fixture(scope="session")
def pulsar() -> Iterator[PulsarEndpoints]:
    """A real Pulsar for the whole session; started (and stopped) only if a pulsar test runs."""
    with pulsar_endpoints() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def pulsar_url(pulsar: PulsarEndpoints) -> str:
    return pulsar.http
