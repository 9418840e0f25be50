"""The consumer log events the Kubernetes checks look for: the ONE place that knows their names.

The services log JSON lines with an `event` field. Both the current wording ("took over the
subscription", "subscription busy: ... waiting as standby") and the snake_case names (`took_over`,
`subscription_busy`) are accepted, so a rename of the events only needs this file checked.
Roles themselves are read from `/status` (`role`: active | standby | connecting), not from logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: kind -> accepted `event` values (exact) and prefixes
SUBSCRIBED = "subscribed"
TOOK_OVER = "took_over"
STANDBY = "standby"
RECEIVED = "received"
STOPPING = "stopping"  # the service got SIGTERM and starts its graceful shutdown

_EXACT: dict[str, str] = {
    "subscribed": SUBSCRIBED,
    "took over the subscription": TOOK_OVER,
    "took_over": TOOK_OVER,
    "subscription_busy": STANDBY,
    "received": RECEIVED,
    "stopping": STOPPING,
}
_PREFIXES: tuple[tuple[str, str], ...] = (("subscription busy:", STANDBY),)


def kind_of(event: str) -> str | None:
    """SUBSCRIBED, TOOK_OVER, STANDBY, RECEIVED, STOPPING or None for any other event."""
    found = _EXACT.get(event)
    if found is not None:
        return found
    for prefix, kind in _PREFIXES:
        if event.startswith(prefix):
            return kind
    return None


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
    if not isinstance(producer_id, str) or not isinstance(seq, str) or not seq.isdigit():
        return None
    return LogEvent(pod, at, kind, producer_id, int(seq))
