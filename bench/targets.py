"""The systems measured, one column each: the embedded broker, a real Apache Pulsar, and
Pulsar's native Python client against that same Pulsar.

Every column is a dict of figures; a figure that could not be measured holds
`{"error": "..."}` and a column that could not run at all is `{"unavailable": "reason"}`.
Everything a column starts (broker, services, workers, Pulsar) is stopped when it ends,
whether it ended well, failed, or was cancelled (Ctrl-C, the run's deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import services, workloads
from bench.config import BenchConfig
from bench.workloads import Client
from harness import Cluster

Progress = Callable[[str], None]


async def measure(column: dict[str, Any], key: str, step: Awaitable[Any], progress: Progress) -> Any:
    """Run one step; on failure record its error under `key` and go on."""
    started = time.monotonic()
    progress(f"{key} ...")
    try:
        column[key] = await step
    except (Exception, TimeoutError) as error:  # one failed figure must not cost the others
        column[key] = {"error": f"{type(error).__name__}: {error}"[:400]}
    progress(f"{key} done in {time.monotonic() - started:.1f} s")
    return column[key]


async def _client_figures(
    column: dict[str, Any], client: Client, cfg: BenchConfig, progress: Progress
) -> None:
    n = cfg.throughput_messages
    await measure(column, "publish", workloads.publish_throughput(client, n, timeout=120), progress)
    await measure(column, "e2e", workloads.end_to_end(client, n, timeout=120), progress)
    rates = list(cfg.latency_rates)
    await measure(
        column, "latency", workloads.latency_at_rates(client, rates, cfg.latency_seconds, 60), progress
    )


async def _service_figures(
    column: dict[str, Any],
    cluster: Cluster,
    broker_pid: Callable[[], int | None],
    cfg: BenchConfig,
    progress: Progress,
    fresh_broker: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    async with services.phase(cluster):
        step = services.takeover(cluster, cfg.takeover_trials, cfg.standby_retry)
        await measure(column, "takeover", step, progress)
    if fresh_broker is not None:
        # Peak RSS is the process's high-water mark: a broker that just held the throughput
        # runs' retained messages would report those, not the 1,000 msg/s steady state.
        await fresh_broker()
    async with services.phase(cluster):
        step = services.resources(cluster, broker_pid(), cfg.resources_seconds)
        await measure(column, "resources", step, progress)


async def embedded(cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
    """The embedded broker (`python -m broker`) with our client and services."""
    data = Path(tempfile.mkdtemp(prefix="streampair-bench-"))
    cluster = Cluster(data)
    column: dict[str, Any] = {"system": "embedded broker (python -m broker), WebSocket, streampair client"}
    try:
        await cluster.start_broker(LOG_LEVEL="warning")
        async with services.phase(cluster):
            await measure(
                column, "ready", services.readiness(cluster, cfg.ready_trials, with_broker=True), progress
            )
        if (
            cluster.broker is None
            or cluster.broker.proc is None
            or cluster.broker.proc.returncode is not None
        ):
            await cluster.start_broker(LOG_LEVEL="warning")
        client = Client("ours", cluster.stream_env["STREAM_URL"])
        await _client_figures(column, client, cfg, progress)

        def pid() -> int | None:
            return cluster.broker.proc.pid if cluster.broker and cluster.broker.proc else None

        async def fresh_broker() -> None:
            # Empty data too: a restarted broker reloads the retained messages of the
            # throughput topics (BROKER_RETENTION_MESSAGES per topic without subscription).
            assert cluster.broker is not None
            await cluster.broker.stop()
            shutil.rmtree(data / "broker", ignore_errors=True)
            await cluster.start_broker(LOG_LEVEL="warning")

        await _service_figures(column, cluster, pid, cfg, progress, fresh_broker)
    finally:
        await cluster.stop()
        shutil.rmtree(data, ignore_errors=True)
    return column


def _pulsar_unavailable() -> str | None:
    if shutil.which("java") is None:
        return "java not found (Apache Pulsar standalone needs Java 17+)"
    try:
        importlib.import_module("harness.pulsar")
    except ImportError as error:
        return f"harness.pulsar cannot be imported: {error}"
    return None


async def pulsar(cfg: BenchConfig, progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """A real Apache Pulsar standalone on loopback: our client and services, and the native client."""
    reason = _pulsar_unavailable()
    if reason is not None:
        return {"unavailable": reason}, {"unavailable": reason}
    from harness.pulsar import PulsarStandalone

    standalone = PulsarStandalone()
    column: dict[str, Any] = {"system": "Apache Pulsar 4.0.7 standalone, WebSocket API, streampair client"}
    native: dict[str, Any] = {"system": "Apache Pulsar 4.0.7 standalone, binary protocol, pulsar-client"}
    progress("starting Apache Pulsar (scripts/pulsar-standalone) ...")
    try:
        start = asyncio.ensure_future(asyncio.to_thread(standalone.start))
        try:
            await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await start  # let a start in progress finish, so that the stop below finds it
            raise
        except (RuntimeError, OSError) as error:
            text = " ".join(str(error).split())[:400]
            return {"unavailable": f"Pulsar did not start: {text}"}, {"unavailable": "Pulsar did not start"}
        progress(f"Pulsar healthy after {standalone.start_seconds:.1f} s")
        column["ready"] = {
            "broker": {
                "max": round(standalone.start_seconds, 3),
                "note": "scripts/pulsar-standalone start to healthy",
            }
        }
        cluster = Cluster(standalone.cache, STREAM_URL=f"ws://127.0.0.1:{standalone.web_port}")
        try:
            async with services.phase(cluster):
                ready = await measure(
                    column,
                    "ready_services",
                    services.readiness(cluster, cfg.ready_trials, with_broker=False),
                    progress,
                )
            if isinstance(ready, dict) and "error" not in ready:
                column["ready"].update(ready)
            column.pop("ready_services", None)
            await _client_figures(column, Client("ours", cluster.stream_env["STREAM_URL"]), cfg, progress)

            def pid() -> int | None:
                with contextlib.suppress(OSError, ValueError):
                    return int((standalone.cache / "pulsar.pid").read_text().strip())
                return None

            await _service_figures(column, cluster, pid, cfg, progress)
        finally:
            await cluster.stop()
        if importlib.util.find_spec("pulsar") is None:
            native = {"unavailable": "pulsar-client is not installed (uv sync --all-packages)"}
        else:
            native_client = Client("native", f"pulsar://127.0.0.1:{standalone.broker_port}")
            n = cfg.throughput_messages
            await measure(
                native, "publish", workloads.publish_throughput(native_client, n, timeout=120), progress
            )
            await measure(native, "e2e", workloads.end_to_end(native_client, n, timeout=120), progress)
            native["publish_settings"] = "send_async + flush, batching off, 1000 pending, block_if_queue_full"
    finally:
        progress("stopping Pulsar ...")
        await asyncio.to_thread(standalone.stop)
    return column, native
