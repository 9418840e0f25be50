"""`streampair-broker` / `python -m broker`: run the embedded broker until SIGTERM or SIGINT.

Exit status 2 with one line on stderr for a bad setting (including listening beyond
loopback without BROKER_AUTH_TOKEN), a bad TLS file or an unusable data directory.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from typing import NoReturn

from aiohttp import web
from streampair.logs import configure_logging, get_logger
from streampair.settings import EXIT_CONFIG, load_settings

from broker.settings import BrokerSettings

SERVICE = "streampair-broker"


def _die(message: str, status: int = EXIT_CONFIG) -> NoReturn:
    print(f"{SERVICE}: {message}", file=sys.stderr)
    raise SystemExit(status)


def main() -> None:
    settings = load_settings(BrokerSettings, SERVICE)
    problem = settings.check_tls_pair()
    if problem is not None:
        _die(problem)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    # Imported after logging is configured: their module-level loggers bind at import time.
    from broker.app import create_app, ssl_context
    from broker.storage import StorageError

    try:
        context = ssl_context(settings)
    except (ssl.SSLError, OSError) as error:
        _die(f"invalid setting BROKER_TLS_CERT/BROKER_TLS_KEY: cannot load them ({type(error).__name__})")
    try:
        app = create_app(settings)
    except StorageError as error:
        _die(f"invalid setting BROKER_DATA_DIR: {error}")
    sys.exit(asyncio.run(serve(app, settings, context)))


async def serve(app: web.Application, settings: BrokerSettings, context: ssl.SSLContext | None) -> int:
    """Listen, say so only once bound, and stop on SIGTERM or SIGINT."""
    log = get_logger("broker")
    # access_log=None: a request line can carry ?token= or ?otp=: never log it.
    runner = web.AppRunner(app, shutdown_timeout=settings.broker_shutdown_timeout_seconds, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.broker_host, settings.broker_port, ssl_context=context)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        _die(f"cannot listen on {settings.broker_host}:{settings.broker_port}: {error.strerror}", 1)
    port = runner.addresses[0][1]
    log.info(
        "broker_listening",
        url=f"{'https' if context is not None else 'http'}://{settings.broker_host}:{port}",
        settings=settings.describe(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    main()
