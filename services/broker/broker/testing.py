"""Run a broker inside a test: `async with running_broker(tmp_path) as base_url: ...`.

For the test suites of the client library and the services as much as for the broker's own.
The broker listens on 127.0.0.1 with an ephemeral port and stops (committing what is pending)
when the block ends. `base_url` is `http://127.0.0.1:PORT` (or https with `tls`); WebSocket
URLs are the same with `ws`/`wss`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from broker.app import create_app, ssl_context
from broker.settings import BrokerSettings


@asynccontextmanager
async def running_broker(
    data_dir: Path | str,
    *,
    token: str | None = None,
    tls: tuple[Path, Path] | None = None,
    **settings: Any,
) -> AsyncIterator[str]:
    """Start an in-process broker; `tls` is (certificate, key) PEM paths; `settings` are
    further `BrokerSettings` fields (for example `broker_retention_messages=10`)."""
    config = BrokerSettings(
        broker_host="127.0.0.1",
        broker_port=0,
        broker_data_dir=Path(data_dir),
        broker_auth_token=SecretStr(token) if token is not None else None,
        broker_tls_cert=tls[0] if tls else None,
        broker_tls_key=tls[1] if tls else None,
        **settings,
    )
    app = create_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=config.broker_shutdown_timeout_seconds, access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(config))
        await site.start()
        port = runner.addresses[0][1]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
