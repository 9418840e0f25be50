"""The consumer log events the Kubernetes checks look for, named in ONE place for both real-engine
checks: scripts/e2e/consumer_logs.py (`EVENTS`, `kind_of`, `SEQ`), on the path by lib.sh.
Roles themselves are read from `/status` (`role`: active | standby | connecting), not from logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consumer_logs import SEQ, kind_of

SUBSCRIBED = "subscribed"
TOOK_OVER = "took_over"
STANDBY = "standby"
RECEIVED = "received"
STOPPING = "stopping"  # the service got SIGTERM and starts its graceful shutdown


@dataclass(frozen=True)
class LogEvent:
    pod: str
    at: float  # epoch seconds, from the container runtime's timestamp of the line
    kind: str
    producer_id: str | None = None
    seq: int | None = None


def parse(pod: str, at: float, line: str) -> LogEvent | None:
    """The LogEvent of one JSON log line, or None when the line is not one the checks use."""
    try:
        record: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    kind = kind_of(str(record.get("event", "")))
    if kind is None:
        return None
    if kind != RECEIVED:
        return LogEvent(pod, at, kind)
    props = record.get("properties")
    if not isinstance(props, dict):
        return None
    producer_id, seq = props.get("producer_id"), props.get("seq")
    if not isinstance(producer_id, str) or not isinstance(seq, str) or not SEQ.fullmatch(seq):
        return None
    return LogEvent(pod, at, kind, producer_id, int(seq))
