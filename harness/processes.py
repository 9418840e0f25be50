"""Run the real service entrypoints as processes and watch what they log.

Used by the end-to-end tests, the benchmarks and the chaos suite: the same commands the
images run (`python -m broker|producer|consumer`), over loopback, with JSON logs parsed so a
test can await an event ("received seq 17") instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]  # the repository
Predicate = Callable[[dict[str, Any]], bool]


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


def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...) in MB; 0 when it has none."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process now, in MB (Linux /proc)."""
    return status_mb(pid, "VmRSS")


async def start_module(module: str, spec: dict[str, Any], **options: Any) -> asyncio.subprocess.Process:
    """`python -m <module> '<spec as JSON>'` from the repository's root: a benchmark's worker
    process; `options` are create_subprocess_exec's (pipes, env, limit)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, json.dumps(spec), cwd=str(ROOT), **options
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STREAM_", "BROKER_", "SUBSCRIPTION_", "C8_"))
    }
    env.update({"LOG_FORMAT": "json", "LOG_LEVEL": "info", "HTTP_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


@dataclass
class Service:
    """One running process of ours; `lines` holds its parsed stdout (JSON objects)."""

    name: str
    module: str
    env: dict[str, str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    proc: asyncio.subprocess.Process | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def http_port(self) -> int:
        return int(self.env.get("HTTP_PORT") or self.env.get("BROKER_PORT") or 8000)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> Service:
        self.lines.clear()
        self.raw.clear()
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=self.env,
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=8 * 1024 * 1024,
        )
        assert self.proc.stdout and self.proc.stderr
        self._pumps = [
            asyncio.create_task(self._pump_stdout(self.proc.stdout)),
            asyncio.create_task(self._pump_stderr(self.proc.stderr)),
        ]
        return self

    async def _pump_stdout(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"event": line}
            if isinstance(obj, dict):
                self.lines.append(obj)
            self._changed.set()
        self._changed.set()

    async def _pump_stderr(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            self.stderr.extend(raw)
        self._changed.set()

    async def wait_for(self, predicate: Predicate, timeout: float = 20.0, start: int = 0) -> dict[str, Any]:
        """The first log line (from index `start`) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.lines):
                line = self.lines[index]
                index += 1
                if predicate(line):
                    return line
            if (
                self.proc is not None
                and self.proc.returncode is not None
                and all(t.done() for t in self._pumps)
            ):
                errors = [line for line in self.lines if line.get("level") in ("error", "critical")]
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) before the awaited line; "
                    f"last error logged: {errors[-1] if errors else None}; "
                    f"stderr: {self.stderr.decode()[-2000:]}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = "\n".join(self.raw[-15:])
                raise TimeoutError(
                    f"{self.name}: awaited log line did not come within {timeout}s; last lines:\n{tail}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    async def get_json(self, path: str) -> tuple[int, Any]:
        """Status and body of a GET: parsed JSON, or the text when it is not JSON."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession() as session, session.get(self.url + path, timeout=timeout) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def post_json(self, path: str, body: object, timeout: float = 40.0) -> tuple[int, Any]:
        """Status and parsed JSON answer of a POST with a JSON body."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as r,
        ):
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def metric(self, name: str, labels: str = "") -> float:
        """One sample from /metrics (`labels` as exposed, e.g. 'endpoint="consumer"'); 0 if absent."""
        _, text = await self.get_json("/metrics")
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in str(text).splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def wait_http(self, path: str, predicate: Callable[[int, Any], bool], timeout: float = 20.0) -> Any:
        """Poll an endpoint until `predicate(status, body)`: for state that has no log line."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                status, body = await self.get_json(path)
                last = (status, body)
                if predicate(status, body):
                    return body
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                last = error
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}); stderr: {self.stderr.decode()[-2000:]}"
                )
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}{path} did not reach the expected state within {timeout}s: {last}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await self.wait_exit(10)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.wait_exit(5)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    def rss_mb(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid)


class Cluster:
    """A broker, producers and consumers on loopback, stopped together."""

    def __init__(self, data_dir: Path, **stream_env: str) -> None:
        self.data_dir = data_dir
        self.broker_port = free_port()
        self.stream_env = {"STREAM_URL": f"ws://127.0.0.1:{self.broker_port}", **stream_env}
        self.services: list[Service] = []
        self.broker: Service | None = None

    def add(self, name: str, module: str, **env: str) -> Service:
        service = Service(name, module, base_env(**env))
        self.services.append(service)
        return service

    async def start_broker(self, **env: str) -> Service:
        if self.broker is None:
            self.broker = self.add(
                "broker",
                "broker",
                BROKER_PORT=str(self.broker_port),
                BROKER_DATA_DIR=str(self.data_dir / "broker"),
                **env,
            )
        await self.broker.start()
        await self.broker.wait_http("/admin/v2/brokers/health", lambda s, _: s == 200)
        return self.broker

    async def start_producer(self, name: str = "producer-1", **env: str) -> Service:
        svc = self.add(name, "producer", HTTP_PORT=str(free_port()), **{**self.stream_env, **env})
        await svc.start()
        await svc.wait_for(lambda line: line.get("event") == "listening")
        return svc

    async def start_consumer(self, name: str, **env: str) -> Service:
        svc = self.add(
            name, "consumer", HTTP_PORT=str(free_port()), CONSUMER_NAME=name, **{**self.stream_env, **env}
        )
        await svc.start()
        if env.get("ON_BUSY") != "exit":  # such a consumer may exit before anyone looks
            await svc.wait_for(lambda line: line.get("event") == "listening")
        return svc

    async def stop(self) -> None:
        await asyncio.gather(
            *(s.stop() for s in self.services if s is not self.broker), return_exceptions=True
        )
        if self.broker is not None:
            await self.broker.stop()
