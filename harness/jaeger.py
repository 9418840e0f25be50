"""A real Jaeger v2 on loopback (scripts/jaeger-local): OTLP/HTTP in, the query API out.

`JaegerLocal.build()` builds the binary from Jaeger's Go module once (cached under
.cache/jaeger); `start()` runs it with scripts/jaeger/config.yaml on free ports and waits until
both the OTLP receiver and the query API answer; `trace(id)` reads one trace back through the
query API (`GET /api/traces/{id}`). Stopped by pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness.processes import ROOT, free_port

SCRIPT = ROOT / "scripts" / "jaeger-local"
GO_MISSING = "Go not found: install Go >= 1.24 (scripts/jaeger-local builds Jaeger from its Go module)"


def go_missing() -> str | None:
    """Why Jaeger cannot be built here, or None."""
    return GO_MISSING if shutil.which("go") is None else None


def built() -> str | None:
    """The binary's path when it is built already, else None (nothing is built)."""
    result = subprocess.run([str(SCRIPT), "path"], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def build(timeout: float = 1800) -> str:
    """The binary's path; builds it first when it is not cached (minutes, once)."""
    result = subprocess.run(
        [str(SCRIPT), "build"], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/jaeger-local build failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Span:
    """One span as the query API returns it, flattened."""

    trace_id: str
    span_id: str
    name: str
    service: str
    parent_id: str | None
    kind: str | None
    tags: dict[str, Any]


class JaegerLocal:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.otlp_port = free_port()
        self.query_port = free_port()
        self.grpc_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = bytearray()
        self._pump: asyncio.Task[None] | None = None

    @property
    def otlp_endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (the SDK appends /v1/traces)."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def env(self, service: str | None = None) -> dict[str, str]:
        """What a process of ours needs to trace into this Jaeger."""
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint}
        if service:
            env["OTEL_SERVICE_NAME"] = service
        return env

    async def start(self, timeout: float = 60) -> JaegerLocal:
        config = ROOT / "scripts" / "jaeger" / "config.yaml"
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--config",
            f"file:{config}",
            env={
                "PATH": "/usr/bin:/bin",
                "JAEGER_OTLP_HTTP_PORT": str(self.otlp_port),
                "JAEGER_QUERY_PORT": str(self.query_port),
                "JAEGER_QUERY_GRPC_PORT": str(self.grpc_port),
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        self._pump = asyncio.create_task(self._read(self.proc.stderr))
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"jaeger exited ({self.proc.returncode}): {self.stderr.decode()[-3000:]}"
                    )
                if await self._answers(session):
                    return self
                if time.monotonic() > deadline:
                    await self.stop()
                    raise TimeoutError(
                        f"jaeger not ready within {timeout:.0f} s: {self.stderr.decode()[-3000:]}"
                    )
                await asyncio.sleep(0.1)

    async def _answers(self, session: aiohttp.ClientSession) -> bool:
        """The query API lists services and the OTLP receiver takes an (empty) export."""
        try:
            async with session.get(f"{self.query_url}/api/services") as response:
                if response.status != 200:
                    return False
            async with session.post(
                f"{self.otlp_endpoint}/v1/traces",
                data=b"",
                headers={"Content-Type": "application/x-protobuf"},
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.stderr.extend(line)
            del self.stderr[:-65536]  # the tail is enough to explain a failure

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 5)

    async def services(self) -> list[str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{self.query_url}/api/services") as response,
        ):
            body = await response.json()
        return sorted(body.get("data") or [])

    async def trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace (empty while Jaeger has none of it)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{self.query_url}/api/traces/{trace_id}") as response,
        ):
            if response.status == 404:
                return []
            response.raise_for_status()
            body = await response.json()
        spans: list[Span] = []
        for data in body.get("data") or []:
            processes = data.get("processes", {})
            for raw in data.get("spans", []):
                parents = [r["spanID"] for r in raw.get("references", []) if r.get("refType") == "CHILD_OF"]
                tags = {t["key"]: t["value"] for t in raw.get("tags", [])}
                spans.append(
                    Span(
                        trace_id=raw["traceID"],
                        span_id=raw["spanID"],
                        name=raw["operationName"],
                        service=processes.get(raw["processID"], {}).get("serviceName", ""),
                        parent_id=parents[0] if parents else None,
                        kind=tags.get("span.kind"),
                        tags=tags,
                    )
                )
        return spans

    async def wait_trace(self, trace_id: str, names: set[str], timeout: float = 20) -> dict[str, Span]:
        """Poll until the trace holds a span of every name in `names`; those spans by name."""
        deadline = time.monotonic() + timeout
        spans: list[Span] = []
        while True:
            spans = await self.trace(trace_id)
            found = {s.name: s for s in spans if s.name in names}
            if set(found) == names:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"trace {trace_id}: wanted spans {sorted(names)}, Jaeger has "
                    f"{sorted((s.service, s.name) for s in spans)} after {timeout:.0f} s"
                )
            await asyncio.sleep(0.2)
