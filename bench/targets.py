"""The systems measured, one column each: the embedded broker; a real Apache Pulsar through our
client over WebSocket and over the binary protocol; and, on that same Pulsar in the same run,
the yardsticks: Pulsar's native Python client and a minimal WebSocket client.

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

from bench import services, standby, workloads
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
        broker_pid = pid()
        if broker_pid is not None:
            step = _standby(cfg, cluster.stream_env["STREAM_URL"], None, broker_pid)
            await measure(column, "standby", step, progress)
    finally:
        await cluster.stop()
        shutil.rmtree(data, ignore_errors=True)
    return column


def _standby(cfg: BenchConfig, url: str, admin_url: str | None, pid: int) -> Awaitable[dict[str, Any]]:
    return standby.standby_cost(
        url,
        admin_url,
        pid,
        replicas=cfg.standby_replicas,
        seconds=cfg.standby_seconds,
        warmup=cfg.standby_warmup,
        period=float(cfg.standby_retry or 1.0),
    )


def _pulsar_unavailable() -> str | None:
    if shutil.which("java") is None:
        return "java not found (Apache Pulsar standalone needs Java 17+)"
    try:
        importlib.import_module("harness.pulsar")
    except ImportError as error:
        return f"harness.pulsar cannot be imported: {error}"
    return None


PULSAR_COLUMNS = {
    "pulsar": "Apache Pulsar 4.0.7 standalone, WebSocket API, streampair client",
    "pulsar_binary": "Apache Pulsar 4.0.7 standalone, binary protocol, streampair client",
    "pulsar_native": "Apache Pulsar 4.0.7 standalone, binary protocol, pulsar-client (its synchronous API)",
    "pulsar_raw_ws": "Apache Pulsar 4.0.7 standalone, WebSocket API, a minimal aiohttp client (no library)",
}


async def side_by_side(
    columns: dict[str, dict[str, Any]],
    clients: dict[str, Client],
    key: str,
    step: Callable[[Client], Awaitable[dict[str, Any]]],
    repeats: int,
    progress: Progress,
) -> None:
    """`key` for every client, `repeats` rounds in alternating order; the median run is kept
    (by msg/s) and every run's msg/s is listed, so ratios compare neighbours in time."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    for round_ in range(repeats):
        order = list(clients) if round_ % 2 == 0 else list(clients)[::-1]
        for name in order:
            figure: dict[str, Any] = {}
            await measure(figure, key, step(clients[name]), progress)
            runs[name].append(figure[key])
    for name, results in runs.items():
        good = sorted((r for r in results if "msgs_per_s" in r), key=lambda r: r["msgs_per_s"])
        if not good:
            columns[name][key] = results[-1]
            continue
        every = [r.get("msgs_per_s") for r in results]
        columns[name][key] = {**good[len(good) // 2], "runs_msgs_per_s": every}


async def pulsar(cfg: BenchConfig, progress: Progress) -> dict[str, dict[str, Any]]:
    """A real Apache Pulsar standalone on loopback: our client and services over WebSocket and over
    the binary protocol, Pulsar's native client and a minimal WebSocket client, one JVM, one run."""
    reason = _pulsar_unavailable()
    if reason is not None:
        return {name: {"unavailable": reason} for name in PULSAR_COLUMNS}
    from harness.pulsar import PulsarStandalone

    standalone = PulsarStandalone()
    columns: dict[str, dict[str, Any]] = {name: {"system": text} for name, text in PULSAR_COLUMNS.items()}
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
            return {name: {"unavailable": f"Pulsar did not start: {text}"} for name in PULSAR_COLUMNS}
        progress(f"Pulsar healthy after {standalone.start_seconds:.1f} s")
        await _pulsar_figures(cfg, progress, standalone, columns)
    finally:
        progress("stopping Pulsar ...")
        await asyncio.to_thread(standalone.stop)
    return columns


async def _pulsar_figures(
    cfg: BenchConfig, progress: Progress, standalone: Any, columns: dict[str, dict[str, Any]]
) -> None:
    ws, binary, http = f"ws://127.0.0.1:{standalone.web_port}", standalone.binary_url, standalone.url
    clusters = {
        "pulsar": Cluster(standalone.cache, STREAM_URL=ws),
        "pulsar_binary": Cluster(standalone.cache, STREAM_URL=binary, STREAM_ADMIN_URL=http),
    }
    started = {
        "max": round(standalone.start_seconds, 3),
        "note": "scripts/pulsar-standalone start to healthy",
    }

    def pid() -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((standalone.cache / "pulsar.pid").read_text().strip())
        return None

    try:
        for name, cluster in clusters.items():
            column = columns[name]
            column["ready"] = {"broker": dict(started)}
            async with services.phase(cluster):
                ready = await measure(
                    column, "ready_services", services.readiness(cluster, cfg.ready_trials, False), progress
                )
            if isinstance(ready, dict) and "error" not in ready:
                column["ready"].update(ready)
            column.pop("ready_services", None)
        clients = {
            "pulsar": Client("ours", ws),
            "pulsar_binary": Client("ours", binary),
            "pulsar_native": Client("native", binary),
            "pulsar_raw_ws": Client("raw_ws", ws),
        }
        if importlib.util.find_spec("pulsar") is None:
            reason = {"unavailable": "pulsar-client is not installed (uv sync --all-packages)"}
            columns["pulsar_native"] = reason
            clients.pop("pulsar_native")
            clients.pop("pulsar_binary")
            columns["pulsar_binary"] = dict(reason)
        n, repeats = cfg.throughput_messages, cfg.repeats

        def publish(client: Client) -> Awaitable[dict[str, Any]]:
            return workloads.publish_throughput(client, n, timeout=120)

        def e2e(client: Client) -> Awaitable[dict[str, Any]]:
            return workloads.end_to_end(client, n, timeout=120)

        await side_by_side(columns, clients, "publish", publish, repeats, progress)
        await side_by_side(columns, clients, "e2e", e2e, repeats, progress)
        rates = list(cfg.latency_rates)
        for name in ("pulsar", "pulsar_binary", "pulsar_native"):
            if name in clients:
                step = workloads.latency_at_rates(clients[name], rates, cfg.latency_seconds, 60)
                await measure(columns[name], "latency", step, progress)
        columns["pulsar_native"]["publish_settings"] = (
            "send_async + flush, batching off, 1000 pending, block_if_queue_full"
        )
        for name, cluster in clusters.items():
            if "unavailable" not in columns[name]:
                await _service_figures(columns[name], cluster, pid, cfg, progress)
        broker_pid = pid()
        for name, url, admin in (("pulsar", ws, None), ("pulsar_binary", binary, http)):
            if broker_pid is not None and "unavailable" not in columns[name]:
                await measure(columns[name], "standby", _standby(cfg, url, admin, broker_pid), progress)
    finally:
        for cluster in clusters.values():
            await cluster.stop()
