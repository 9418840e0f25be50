"""Test and benchmark harness: our services as real processes on loopback, and a real Pulsar.

Development tooling, not shipped in any image. `tests/` and `bench/` both import from here
(never from each other), so a service is started, watched and judged the same way in both.
"""

from harness.processes import (
    ROOT,
    Cluster,
    Service,
    base_env,
    cpu_seconds,
    free_port,
    rss_mb,
    serve_app,
    start_module,
    status_mb,
)
from harness.story import (
    FAST,
    active_and_standby,
    all_received,
    is_busy_warning,
    is_event,
    log_time,
    published_seqs,
    received_seqs,
    role,
    stop_producer_and_collect,
    until,
)

__all__ = [
    "FAST",
    "ROOT",
    "Cluster",
    "Service",
    "active_and_standby",
    "all_received",
    "base_env",
    "cpu_seconds",
    "free_port",
    "is_busy_warning",
    "is_event",
    "log_time",
    "published_seqs",
    "received_seqs",
    "role",
    "rss_mb",
    "serve_app",
    "start_module",
    "status_mb",
    "stop_producer_and_collect",
    "until",
]
