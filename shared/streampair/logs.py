"""Structured logs: JSON lines on stdout in containers, a readable console on a terminal.

stdlib logging (aiohttp's access and error logs, asyncio) is routed through the same
processors so that a service writes one stream of one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from streampair.tracing import add_trace_ids

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: Keys whose values are never written, whatever logs them.
SECRET_KEYS = frozenset({"api_key", "apikey", "token", "otp", "authorization", "password", "c8_api_key"})


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Last line of defence: a secret passed by mistake under a known key is masked."""
    for key in event_dict.keys() & SECRET_KEYS:
        event_dict[key] = "***"
    return event_dict


def shared_processors(service: str) -> list[Processor]:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
        add_trace_ids,
        redact_secrets,
    ]


def configure_logging(service: str, level: str = "info", fmt: str | None = None) -> None:
    """Configure structlog and stdlib logging once per process.

    `fmt` is `json` or `console`; None picks console on a terminal and JSON otherwise.
    """
    if fmt is None:
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    shared = shared_processors(service)
    # Tracebacks without local variables: a frame's locals can hold a header with the API key.
    exceptions: Processor = (
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if fmt == "json"
        else structlog.processors.format_exc_info
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            exceptions,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, exceptions],  # stdlib records (aiohttp, asyncio) too
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # One line per HTTP request is noise at info level: Prometheus scrapes every 15 s.
    logging.getLogger("aiohttp.access").setLevel(max(LEVELS[level], logging.WARNING))


def get_logger(name: str, **context: Any) -> Any:
    """A lazy logger: safe at import time, configured by the first call after configure_logging."""
    return structlog.stdlib.get_logger(name, **context)
