"""The consumers' logs as `make e2e-docker` reads them: which events matter, how they are spelt, and
every replica's log followed from its start until compose removes it (scripts/e2e/stories.py)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# ----------------------------------------------------------------------------- what the services log
# The ONLY place that knows the consumer's log events: each matches the `event` field of a JSON log
# line (snake_case names; the human sentence is in the `message` field).
EVENTS: dict[str, re.Pattern[str]] = {
    "subscribed": re.compile(r"^subscribed$"),
    "standby": re.compile(r"^subscription_busy$"),
    "took_over": re.compile(r"^took_over$"),
    "received": re.compile(r"^received$"),
    "stopping": re.compile(r"^stopping$"),  # SIGTERM received (shared runtime)
}


#: A seq our producer writes: ASCII digits, not too many ("²".isdigit() is True).
SEQ = re.compile(r"[0-9]{1,18}")


def kind_of(event: str) -> str | None:
    """The EVENTS name whose pattern matches a log line's `event`, or None."""
    return next((name for name, pattern in EVENTS.items() if pattern.search(event)), None)


# ----------------------------------------------------------------------------- consumer logs, followed
@dataclass(frozen=True)
class Event:
    container: str  # name
    at: float  # docker's timestamp of the line (epoch seconds)
    record: dict[str, Any]

    def kind(self) -> str | None:
        return kind_of(str(self.record.get("event", "")))


def parse_docker_time(stamp: str) -> float:
    # RFC 3339 with nanoseconds; Python parses microseconds
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


class LogTap:
    """Follows every consumer container's log (`docker logs -f`) from its start until it is removed,
    so that the gap check sees what replicas received before compose removed them. A container
    started again is followed again from the beginning; lines already seen are dropped."""

    def __init__(self, docker_bin: str, list_containers: Callable[[], list[dict[str, Any]]]) -> None:
        self.docker_bin = docker_bin
        self.list_containers = list_containers
        self.lock = threading.Lock()
        self.lines: dict[str, dict[str, None]] = {}  # container name -> ordered set of lines
        self.followers: dict[str, subprocess.Popen[str]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                for c in self.list_containers():
                    follower = self.followers.get(c["Id"])
                    if follower is None or follower.poll() is not None:
                        self._follow(c["Id"], str(c["Name"]).lstrip("/").removeprefix("streampair-"))
            except (subprocess.SubprocessError, ValueError):
                pass  # a container vanished between ps and inspect: next round
            self.stopping.wait(0.3)

    def _follow(self, cid: str, name: str) -> None:
        proc = subprocess.Popen(
            [self.docker_bin, "logs", "-f", "--timestamps", cid],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.followers[cid] = proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line[:1].isdigit():
                    continue  # `docker logs` itself ("No such container" once compose removed it)
                with self.lock:
                    self.lines.setdefault(name, {})[line.rstrip("\n")] = None

        threading.Thread(target=pump, daemon=True).start()

    def events(self, kind: str | None = None, container: str | None = None) -> list[Event]:
        with self.lock:
            snapshot = {name: list(lines) for name, lines in self.lines.items()}
        out = []
        for name, lines in snapshot.items():
            if container is not None and name != container:
                continue
            for line in lines:
                stamp, _, text = line.partition(" ")
                if not text.startswith("{"):
                    continue
                try:
                    event = Event(name, parse_docker_time(stamp), json.loads(text))
                except ValueError:
                    continue
                if kind is None or event.kind() == kind:
                    out.append(event)
        return sorted(out, key=lambda e: e.at)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for proc in self.followers.values():
            if proc.poll() is None:
                proc.terminate()


def sequence_report(events: Iterable[Event]) -> tuple[int, int, int, int]:
    """(messages, highest seq, gaps, duplicates) over the `received` events of every replica."""
    per_producer: dict[str, list[int]] = {}
    for event in events:
        props = event.record.get("properties") or {}
        seq = str(props.get("seq", ""))
        if SEQ.fullmatch(seq):  # a forged "²" or 5,000 digits is no seq of ours
            per_producer.setdefault(str(props.get("producer_id")), []).append(int(seq))
    total = gaps = duplicates = high = 0
    for seqs in per_producer.values():
        unique = sorted(set(seqs))
        total += len(seqs)
        duplicates += len(seqs) - len(unique)
        gaps += (unique[-1] - unique[0] + 1) - len(unique)
        high = max(high, unique[-1])
    return total, high, gaps, duplicates
