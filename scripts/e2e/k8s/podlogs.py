"""Every line the consumer Pods log, read from the node's container log files while the Pods live.

Why the files and not `kubectl logs`: the checks delete Pods (also with --grace-period=0), and a
deleted Pod's logs are gone from the API at once, possibly before its last lines were streamed. The
kubelet writes each container's stdout to <podLogsDir>/<ns>_<pod>_<uid>/<container>/<n>.log (CRI
format: `<RFC3339Nano time> stdout|stderr F|P <text>`); a file opened here stays readable after the
kubelet removes it, so nothing a Pod logged before it died is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from log_events import LogEvent, parse


def cri_time(stamp: str) -> float:
    """Epoch seconds of a CRI log timestamp (RFC3339 with nanoseconds: Python keeps microseconds)."""
    if "." in stamp:
        head, rest = stamp.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        stamp = f"{head}.{digits[:6]:0<6}{zone}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class _Tail:
    pod: str
    handle: IO[bytes]
    pending: bytes = b""
    partial: str = ""
    gone_reads: int = 0  # reads at EOF after the file disappeared


@dataclass
class PodLogs:
    """Tails the log files of one container name in one namespace; collects the parsed events."""

    logs_dir: Path
    namespace: str
    container: str
    poll_seconds: float = 0.1
    save_dir: Path | None = None  # every line read is also appended to <save_dir>/<pod>.log
    events: list[LogEvent] = field(default_factory=list)
    lines: int = 0

    def __post_init__(self) -> None:
        self._tails: dict[Path, _Tail] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podlogs", daemon=True)

    def start(self) -> PodLogs:
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for tail in self._tails.values():
            tail.handle.close()

    def snapshot(self) -> list[LogEvent]:
        with self._changed:
            return list(self.events)

    def wait_for(self, predicate: Callable[[list[LogEvent]], bool], timeout: float) -> bool:
        """Block until predicate(events) holds (re-checked on every new event) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.events), timeout)

    # ------------------------------------------------------------------ reader thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._discover()
            new: list[LogEvent] = []
            for path, tail in list(self._tails.items()):
                new.extend(self._read(tail))
                if not path.exists():
                    tail.gone_reads += 1
                    if tail.gone_reads > 3:  # removed by the kubelet and fully read
                        tail.handle.close()
                        del self._tails[path]
            if new:
                with self._changed:
                    self.events.extend(new)
                    self._changed.notify_all()
            self._stop.wait(self.poll_seconds)

    def _discover(self) -> None:
        pattern = f"{self.namespace}_*_*/{self.container}/*.log"
        for path in self.logs_dir.glob(pattern):
            if path in self._tails:
                continue
            pod = path.parent.parent.name.split("_")[1]
            try:
                self._tails[path] = _Tail(pod, path.open("rb"))
            except FileNotFoundError:
                continue

    def _read(self, tail: _Tail) -> list[LogEvent]:
        data = tail.handle.read()
        if not data:
            return []
        chunks = (tail.pending + data).split(b"\n")
        tail.pending = chunks.pop()
        out: list[LogEvent] = []
        for raw in chunks:
            parts = raw.decode("utf-8", "replace").split(" ", 3)
            if len(parts) < 4 or parts[1] != "stdout":
                continue
            stamp, _, flag, text = parts
            if flag == "P":  # the runtime split a long line: the rest follows
                tail.partial += text
                continue
            text, tail.partial = tail.partial + text, ""
            self.lines += 1
            if self.save_dir is not None:
                with (self.save_dir / f"{tail.pod}.log").open("a", encoding="utf-8") as saved:
                    saved.write(f"{stamp} {text}\n")
            event = parse(tail.pod, cri_time(stamp), text)
            if event is not None:
                out.append(event)
        return out
