"""`make demo`: the embedded broker, one producer and two consumers, as local processes.

Output is prefixed and coloured like `docker compose` (`producer-1 | ...`). Ctrl-C stops
everything cleanly (SIGTERM to each, then waits). Nothing but Python is needed.
"""

from __future__ import annotations

import asyncio
import os
import signal
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


async def wait_healthy(url: str, seconds: float = 15.0) -> None:
    """Wait until the broker answers, so the clients' first attempt succeeds (they would retry anyway)."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + seconds
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def main() -> int:
    broker_port = os.environ.get("DEMO_BROKER_PORT", "8080")
    stream = {"STREAM_URL": f"ws://127.0.0.1:{broker_port}", "HTTP_HOST": "127.0.0.1"}
    data_dir = os.environ.get("BROKER_DATA_DIR", str(ROOT / ".cache" / "demo-broker"))
    plan = [
        ("broker", "broker", {"BROKER_PORT": broker_port, "BROKER_DATA_DIR": data_dir}),
        ("producer-1", "producer", {**stream, "HTTP_PORT": "8001"}),
        ("consumer-1", "consumer", {**stream, "HTTP_PORT": "8002", "CONSUMER_NAME": "consumer-1"}),
        ("consumer-2", "consumer", {**stream, "HTTP_PORT": "8003", "CONSUMER_NAME": "consumer-2"}),
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
        if module == "broker":
            await wait_healthy(f"http://127.0.0.1:{broker_port}/admin/v2/brokers/health")
    pids = ", ".join(f"{name}={proc.pid}" for name, proc in procs)
    print(f"demo running: {pids}", flush=True)
    print(
        "status: curl -s localhost:8002/status  localhost:8003/status   "
        "takeover: kill -9 <pid of the active consumer>   stop: Ctrl-C",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker = procs[0][1]
    waiter = asyncio.create_task(broker.wait())
    await asyncio.wait({asyncio.create_task(stop.wait()), waiter}, return_when=asyncio.FIRST_COMPLETED)
    # Stop the clients first, then the broker, so consumers close their subscriptions cleanly.
    for _, proc in reversed(procs):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    await asyncio.gather(*pumps, return_exceptions=True)
    print("demo stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
