"""A real Apache Pulsar for the tests marked `pulsar`: the one in `PULSAR_URL`, or one we start.

`pulsar_endpoints()` is a context manager yielding Pulsar's http base URL (admin REST and, with
`ws://`, the WebSocket API) and its binary protocol URL (`pulsar://`); `pulsar_service()` yields
the first only. With `PULSAR_URL`, the binary URL is `PULSAR_BINARY_URL` (default: port 6650 of
PULSAR_URL's host). Without `PULSAR_URL` it runs `scripts/pulsar-standalone start` on
free loopback ports with its own cache directory (data, config, logs, pid file) whose `lib`
is a link to the repository's assembled jars. So a developer's own standalone on 8080 (or
another test session) is neither reused nor disturbed, and every session starts from empty
data. It is stopped and its directory removed when the block ends. A Pulsar that cannot start
raises: the pulsar tests then fail, they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness.processes import ROOT, free_port

SCRIPT = ROOT / "scripts" / "pulsar-standalone"
SHARED_CACHE = ROOT / ".cache" / "pulsar"


def http_base(url: str) -> str:
    """`PULSAR_URL` may be given as ws(s):// or http(s)://; the tests want http(s)://."""
    url = url.rstrip("/")
    if url.startswith("ws://"):
        return "http://" + url.removeprefix("ws://")
    if url.startswith("wss://"):
        return "https://" + url.removeprefix("wss://")
    return url


def _run(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class PulsarStandalone:
    """One `scripts/pulsar-standalone` instance on its own ports and cache directory."""

    def __init__(self) -> None:
        self.web_port = free_port()
        self.broker_port = free_port()
        self.bookie_port = free_port()
        self.cache = Path(tempfile.mkdtemp(prefix="streampair-pulsar-"))
        self.env = {
            **os.environ,
            "PULSAR_CACHE_DIR": str(self.cache),
            "PULSAR_WEB_PORT": str(self.web_port),
            "PULSAR_BROKER_PORT": str(self.broker_port),
            "PULSAR_BOOKIE_PORT": str(self.bookie_port),
            "PULSAR_START_TIMEOUT": os.environ.get("PULSAR_START_TIMEOUT", "120"),
            # The data is thrown away after the session, so a clean shutdown buys nothing:
            # SIGTERM takes Pulsar 5.5-9 s, the script's SIGKILL fallback after 2 s saves CI time.
            "PULSAR_STOP_TIMEOUT": os.environ.get("PULSAR_STOP_TIMEOUT", "2"),
        }
        self.start_seconds = 0.0
        self.stop_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def binary_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.broker_port}"

    def start(self) -> str:
        t0 = time.monotonic()
        # The jars are assembled once in the repository's cache (a no-op when done, offline
        # when ~/.m2 is warm) and shared by link: 235 MB are not copied per session.
        shared = {k: v for k, v in self.env.items() if k != "PULSAR_CACHE_DIR"}
        fetched = _run("fetch", shared, timeout=900)
        if fetched.returncode != 0:
            raise RuntimeError(f"scripts/pulsar-standalone fetch failed:\n{fetched.stderr[-4000:]}")
        (self.cache / "lib").symlink_to(SHARED_CACHE / "lib", target_is_directory=True)
        started = _run("start", self.env, timeout=300)
        self.start_seconds = time.monotonic() - t0
        if started.returncode != 0:
            raise self.failure("start", started)
        return self.url

    def failure(self, command: str, done: subprocess.CompletedProcess[str]) -> RuntimeError:
        """The error for a failed `scripts/pulsar-standalone <command>`: its stderr and the log's tail,
        which is where Pulsar says why it did not come up."""
        log = self.cache / "pulsar.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        return RuntimeError(
            f"scripts/pulsar-standalone {command} failed ({done.returncode}):\n"
            f"{done.stderr[-4000:]}\n--- pulsar.log tail ---\n{tail}"
        )

    def stop(self) -> None:
        t0 = time.monotonic()
        try:
            stopped = _run("stop", self.env, timeout=120)
            if stopped.returncode != 0:
                raise RuntimeError(f"scripts/pulsar-standalone stop failed:\n{stopped.stderr[-2000:]}")
        finally:
            self.stop_seconds = time.monotonic() - t0
            shutil.rmtree(self.cache, ignore_errors=True)


@dataclass(frozen=True)
class PulsarEndpoints:
    http: str  # http(s)://host:port: admin REST, and (as ws(s)://) the WebSocket API
    binary: str  # pulsar://host:port: the binary protocol

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http")


@contextmanager
def pulsar_endpoints() -> Iterator[PulsarEndpoints]:
    """A real Pulsar's endpoints: `PULSAR_URL` (and `PULSAR_BINARY_URL`), or a standalone started here."""
    given = os.environ.get("PULSAR_URL")
    if given:
        http = http_base(given)
        binary = os.environ.get("PULSAR_BINARY_URL") or f"pulsar://{urlsplit(http).hostname}:6650"
        yield PulsarEndpoints(http, binary)
        return
    standalone = PulsarStandalone()
    try:
        yield PulsarEndpoints(standalone.start(), standalone.binary_url)
    finally:
        standalone.stop()


@contextmanager
def pulsar_service() -> Iterator[str]:
    """Yield the http base URL of a real Pulsar: `PULSAR_URL`, or a standalone started here."""
    with pulsar_endpoints() as endpoints:
        yield endpoints.http
