"""`make demo`: the embedded broker, one producer and two consumers, as local processes.

Output is prefixed and coloured like `docker compose` (`producer-1 | ...`). Ctrl-C stops
everything cleanly (SIGTERM to each, then waits). Nothing but Python is needed.

Ports on 127.0.0.1: the broker on DEMO_BROKER_PORT (8080), the services' HTTP on
DEMO_HTTP_PORT (8001) and the two after it. A port in use stops the demo at once with one
line that names it; so does a service that exits by itself. The broker's data stays in
.cache/demo-broker between runs (`make demo-reset` clears it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["\033[36m", "\033[33m", "\033[32m", "\033[35m", "\033[34m"]
RESET = "\033[0m"


def env_for(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LOG_FORMAT", "console")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def pipe(name: str, colour: str, stream: asyncio.StreamReader, width: int) -> None:
    tty = sys.stdout.isatty()
    prefix = f"{colour}{name:<{width}} |{RESET} " if tty else f"{name:<{width}} | "
    async for raw in stream:
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, seconds: float = 15.0) -> bool:
    """Wait until the broker answers (the clients' first attempt then succeeds); False if it does not."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + seconds
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline and proc.returncode is None:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return False


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ports() -> tuple[int, int]:
    try:
        broker, http = (
            int(os.environ.get("DEMO_BROKER_PORT", "8080")),
            int(os.environ.get("DEMO_HTTP_PORT", "8001")),
        )
    except ValueError:
        raise SystemExit("make demo: DEMO_BROKER_PORT and DEMO_HTTP_PORT must be port numbers") from None
    for port, variable in ((broker, "DEMO_BROKER_PORT"), *((http + i, "DEMO_HTTP_PORT") for i in range(3))):
        if not 1 <= port <= 65535:
            raise SystemExit(f"make demo: {variable} gives port {port}, not between 1 and 65535")
        if port_in_use(port):
            raise SystemExit(
                f"make demo: port {port} on 127.0.0.1 is in use; stop what holds it, or pick another with "
                f"{variable}=... make demo"
            )
    return broker, http


async def main() -> int:
    broker_port, http_port = ports()
    stream = {"STREAM_URL": f"ws://127.0.0.1:{broker_port}", "HTTP_HOST": "127.0.0.1"}
    data_dir = os.environ.get("BROKER_DATA_DIR", str(ROOT / ".cache" / "demo-broker"))
    plan = [
        ("broker", "broker", {"BROKER_PORT": str(broker_port), "BROKER_DATA_DIR": data_dir}),
        ("producer-1", "producer", {**stream, "HTTP_PORT": str(http_port)}),
        (
            "consumer-1",
            "consumer",
            {**stream, "HTTP_PORT": str(http_port + 1), "CONSUMER_NAME": "consumer-1"},
        ),
        (
            "consumer-2",
            "consumer",
            {**stream, "HTTP_PORT": str(http_port + 2), "CONSUMER_NAME": "consumer-2"},
        ),
    ]
    width = max(len(name) for name, _, _ in plan)
    procs: list[tuple[str, asyncio.subprocess.Process]] = []
    pumps = []
    for index, (name, module, extra) in enumerate(plan):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env=env_for(extra),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        procs.append((name, proc))
        pumps.append(asyncio.create_task(pipe(name, COLOURS[index % len(COLOURS)], proc.stdout, width)))
        if module == "broker" and not await wait_healthy(
            f"http://127.0.0.1:{broker_port}/admin/v2/brokers/health", proc
        ):
            await stop_all(procs, pumps)
            print(
                f"make demo: the broker did not start on port {broker_port} (see its lines above)", flush=True
            )
            return 1
    pids = ", ".join(f"{name}={proc.pid}" for name, proc in procs)
    print(f"demo running: {pids}", flush=True)
    print(
        f"status: curl -s localhost:{http_port + 1}/status  localhost:{http_port + 2}/status   "
        "takeover: kill -9 <pid of the active consumer>   stop: Ctrl-C",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = {asyncio.create_task(proc.wait()): (name, proc) for name, proc in procs[:2]}  # broker, producer
    done, _ = await asyncio.wait(
        {asyncio.create_task(stop.wait()), *exits}, return_when=asyncio.FIRST_COMPLETED
    )
    ended = [exits[task] for task in done if task in exits]
    if ended and not stop.is_set():
        await stop_all(procs, pumps)
        name, proc = ended[0]
        print(f"make demo: {name} exited with status {proc.returncode}; demo stopped", flush=True)
        return 1
    await stop_all(procs, pumps)
    print("demo stopped", flush=True)
    return 0


async def stop_all(
    procs: list[tuple[str, asyncio.subprocess.Process]], pumps: list[asyncio.Task[None]]
) -> None:
    """Stop the clients first, then the broker, so consumers close their subscriptions cleanly."""
    for _, proc in reversed(procs):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    await asyncio.gather(*pumps, return_exceptions=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
