"""The HTTP runtime every service shares: health, metrics, status, logs and shutdown.

- `GET /livez`: the process and its event loop work. Never depends on the broker, so a broker
  outage does not make Kubernetes restart healthy pods.
- `GET /readyz`: 200 while connected in any role (a standby consumer is ready: it can take over),
  else 503 with a JSON reason.
- `GET /metrics`: Prometheus text format. `GET /status`: JSON for people and scripts.

The service's own work runs as one task (`worker`). SIGTERM or SIGINT sets `ctx.stopping`; the
worker finishes what is in flight and returns; the listener closes. A worker that crashes
ends the process with status 1 so that the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streampair import __version__, metrics, tracing
from streampair.errors import StreamError
from streampair.logs import configure_logging, get_logger
from streampair.naming import StreamAddress
from streampair.settings import ServiceSettings
from streampair.webserver import AppRunner, json_errors

log = get_logger("streampair.runtime")

#: How stale the loop's own heartbeat may be before /livez reports the loop stuck.
LOOP_STALL_SECONDS = 10.0


class ServiceExit(Exception):
    """Raised by a worker to end the process with a chosen status (SystemExit would escape asyncio)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"exit status {code}")
        self.code = code


#: What a process is doing: a consumer is `connecting`, `active` or `standby`; a producer `producer`.
Role = Literal["connecting", "active", "standby", "producer"]

_KEEP: Any = object()


@dataclass
class ServiceStatus:
    """What /status and /readyz report. The service's worker is its one owner: it calls `update`."""

    service: str
    #: Fixed facts shown in /status (stream, topic, subscription, ...).
    details: dict[str, Any] = field(default_factory=dict)
    role: Role = "connecting"
    connected: bool = False
    last_error: str | None = None
    stopping: bool = False
    #: Connected, but work cannot proceed (`last_error` says why): not ready.
    blocked: bool = False
    started_at: float = field(default_factory=time.time)
    counters: Callable[[], dict[str, Any]] = field(default=dict)
    #: Called after every `update`, e.g. to export the role as a metric.
    on_update: Callable[[ServiceStatus], None] | None = None

    @property
    def ready(self) -> bool:
        return self.connected and not self.stopping and not self.blocked

    def update(
        self,
        *,
        role: Role | None = None,
        connected: bool | None = None,
        error: str | None = _KEEP,
        stopping: bool | None = None,
        blocked: bool | None = None,
    ) -> None:
        """Change what is given; `error=None` clears the last error."""
        if role is not None:
            self.role = role
        if connected is not None:
            self.connected = connected
        if error is not _KEEP:
            self.last_error = error
        if stopping is not None:
            self.stopping = stopping
        if blocked is not None:
            self.blocked = blocked
        if self.on_update is not None:
            self.on_update(self)

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": __version__,
            "role": self.role,
            "ready": self.ready,
            "connection": "connected"
            if self.connected
            else ("stopping" if self.stopping else "disconnected"),
            **self.details,
            "last_error": self.last_error,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "counters": self.counters(),
        }


@dataclass
class ServiceContext:
    """Handed to the worker: its settings, its status to keep current, and the stop signal."""

    settings: ServiceSettings
    status: ServiceStatus
    stopping: asyncio.Event


Worker = Callable[[ServiceContext], Coroutine[Any, Any, None]]


class ServiceRuntime:
    """One service process: `ServiceRuntime(...).run()` returns the exit status."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        worker: Worker,
        *,
        routes: Iterable[web.RouteDef] = (),
        max_body_bytes: int = 1024 * 1024,
        status: ServiceStatus | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.worker = worker
        self.status = status or ServiceStatus(service)
        metrics.CLIENT.register()
        config = settings.client_config()
        address = StreamAddress.from_config(config)
        self.status.details = {
            "backend": settings.stream_backend,
            "transport": "binary" if config.binary else "websocket",
            "stream": settings.stream_name,
            "topic": address.full_topic,
            **self.status.details,
        }
        self.app = web.Application(middlewares=[json_errors], client_max_size=max_body_bytes)
        self.app.add_routes(
            [
                web.get("/livez", self.livez),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
                web.get("/status", self.status_json),
                *routes,
            ]
        )
        self._last_tick = time.monotonic()
        self.listening = asyncio.Event()  # set once the HTTP port is open and signals are handled

    # -- handlers ----------------------------------------------------------------------------

    async def livez(self, _: web.Request) -> web.Response:
        lag = time.monotonic() - self._last_tick
        if lag > LOOP_STALL_SECONDS:
            return web.json_response({"status": "stalled", "loop_lag_seconds": round(lag, 3)}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        if self.status.ready:
            return web.json_response({"status": "ready", "role": self.status.role})
        reason = (
            "stopping"
            if self.status.stopping
            else (self.status.last_error or "not connected to the broker yet")
        )
        return web.json_response(
            {"status": "not ready", "role": self.status.role, "reason": reason}, status=503
        )

    async def metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_json(self, _: web.Request) -> web.Response:
        return web.json_response(self.status.as_json())

    # -- lifecycle ---------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(1.0)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        runner = AppRunner(self.app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            log.error(
                "cannot_listen", host=self.settings.http_host, port=self.settings.http_port, error=str(error)
            )
            await runner.cleanup()
            return 1
        log.info("listening", port=self.settings.http_port, settings=self.settings.describe())
        for given, meant in self.settings.misspelt_variables().items():
            log.warning("unknown_setting", variable=given, did_you_mean=meant)
        self.listening.set()
        ticker = asyncio.create_task(self._tick())
        ctx = ServiceContext(self.settings, self.status, stopping)
        worker = asyncio.create_task(self.worker(ctx), name=f"{self.service}-worker")
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait({worker, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        self.status.update(stopping=True)
        stopping.set()
        if not worker.done():
            log.info("stopping", grace_seconds=self.settings.shutdown_timeout_seconds)
            # The worker's own outcome is read below; here we only bound the wait.
            await asyncio.wait({worker}, timeout=self.settings.shutdown_timeout_seconds)
            if not worker.done():
                log.warning("worker_stop_timeout", action="cancelled")
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
        failure = worker.exception() if worker.done() and not worker.cancelled() else None
        if isinstance(failure, ServiceExit):
            code = failure.code
        elif isinstance(failure, StreamError):
            # Expected failures (a wrong API key, an untrusted certificate): one clear line.
            log.error(
                "stopped_by_error",
                message="stopped by an error retrying cannot fix",
                error=str(failure),
                error_type=type(failure).__name__,
            )
            code = 1
        elif failure is not None:
            log.error("worker_failed", error_type=type(failure).__name__, exc_info=failure)
            code = 1
        ticker.cancel()
        stop_wait.cancel()
        await runner.cleanup()
        log.info("stopped", exit_status=code)
        return code

    def run(self) -> int:
        configure_logging(self.service, self.settings.log_level, self.settings.log_format)
        metrics.set_build_info(self.service)
        tracing.configure(f"streampair-{self.service}", self.settings.otel_traces_exporter)
        try:
            return asyncio.run(self.serve())
        finally:
            tracing.shutdown(self.settings.shutdown_timeout_seconds)
