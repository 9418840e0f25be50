"""A real Apache Pulsar standalone that the chaos suite can `kill -9` and start again.

Built on `harness.pulsar.PulsarStandalone` (free loopback ports, its own cache directory
with the data, config, log and pid file; the jars are linked from `.cache/pulsar/lib`). A
restart runs `scripts/pulsar-standalone start` again on the same data directory and ports
(never `PULSAR_WIPE`) and waits for health. `close()` SIGKILLs the JVM (its data is thrown
away) and removes the directory; it is synchronous, so it also works from `finally` blocks and
at interpreter exit after Ctrl-C. The JVM runs in its own session (setsid): a Ctrl-C in the
terminal never reaches it, so it must be stopped here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from harness.pulsar import SCRIPT, SHARED_CACHE, PulsarStandalone

T = TypeVar("T")


def unavailable() -> str | None:
    """Why a Pulsar standalone cannot be run here (java or the jars missing), or None."""
    java_home = os.environ.get("JAVA_HOME")
    java = f"{java_home}/bin/java" if java_home and os.access(f"{java_home}/bin/java", os.X_OK) else None
    java = java or shutil.which("java")
    if java is None:
        return "java not found (Apache Pulsar standalone needs Java 17+)"
    try:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{java} -version failed: {error}"
    found = re.search(r'version "(\d+)', probe.stderr + probe.stdout)
    if found is None or int(found.group(1)) < 17:
        return f"{java} is not Java 17+"
    if not (SHARED_CACHE / "lib" / ".complete").is_file() and shutil.which("mvn") is None:
        return "the Pulsar jars are not in .cache/pulsar/lib and mvn (Maven) is not installed to fetch them"
    if not SCRIPT.is_file():
        return f"{SCRIPT} is missing"
    return None


class FetchFailed(RuntimeError):
    """The jars could not be assembled (offline without a warm Maven repository, ...)."""


class ChaosPulsar:
    """One standalone, started once; `kill9()` and `restart()` as often as needed; `close()`."""

    def __init__(self) -> None:
        self.standalone = PulsarStandalone()
        self.standalone.env.pop("PULSAR_WIPE", None)  # a restart must keep the data
        self.restart_seconds: list[float] = []
        self._closed = False
        atexit.register(self.close)

    @property
    def web_port(self) -> int:
        return self.standalone.web_port

    @property
    def cache(self) -> Path:
        return self.standalone.cache

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.web_port}"

    @property
    def binary_url(self) -> str:
        return self.standalone.binary_url

    async def start(self) -> float:
        """First start (fetches the jars if needed); seconds to healthy."""
        try:
            await _finish_even_if_cancelled(asyncio.to_thread(self.standalone.start))
        except RuntimeError as error:
            if "fetch failed" in str(error):
                raise FetchFailed(" ".join(str(error).split())[:400]) from error
            raise
        return self.standalone.start_seconds

    def pid(self) -> int | None:
        """The JVM's pid while it is alive (the script's pid file names it)."""
        try:
            pid = int((self.cache / "pulsar.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def rss_mb(self) -> float | None:
        pid = self.pid()
        if pid is None:
            return None
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    async def kill9(self, timeout: float = 10.0) -> None:
        """SIGKILL the JVM and wait until it is gone (its listening ports close with it)."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError("Pulsar is not running; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Pulsar JVM {pid} is still alive {timeout}s after SIGKILL")
            await asyncio.sleep(0.02)

    async def restart(self) -> float:
        """`scripts/pulsar-standalone start` on the same data and ports; seconds to healthy."""
        t0 = time.monotonic()
        done = await _finish_even_if_cancelled(
            asyncio.to_thread(
                subprocess.run,
                [str(SCRIPT), "start"],
                env=self.standalone.env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        )
        took = time.monotonic() - t0
        if done.returncode != 0:
            log = self.cache / "pulsar.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"Pulsar restart failed ({done.returncode}): {done.stderr[-2000:]}\n"
                f"--- pulsar.log ---\n{tail}"
            )
        self.restart_seconds.append(took)
        return took

    def close(self) -> None:
        """SIGKILL the JVM if it runs and remove the directory; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        pids = {p for p in (self.pid(), *self._jvms_of_this_cache()) if p is not None}
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.cache, ignore_errors=True)
        atexit.unregister(self.close)

    def _jvms_of_this_cache(self) -> list[int]:
        """JVMs whose command line names this instance's own (unique, temporary) config file:
        also one whose pid file a start interrupted by Ctrl-C did not get to write."""
        marker = str(self.cache / "conf" / "standalone.conf").encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await a thread's work; on cancellation let it finish first (so the JVM it may start
    is known to `close()`), then re-raise."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise
