"""pulsar-client for the binary transport: the process's client, its logs, its errors, its ids.

Imported only by `streampair.binary` (only for `pulsar://` URLs), so that the WebSocket path
never loads the C++ library. What is here, and why (docs/transports.md has the user's view):

- One `pulsar.Client` per process and per set of credentials (`shared_client`): its connection
  pool, one IO thread and one listener thread. Created on first use, after any fork (threads do
  not survive a fork), and closed when the last Connector using it closes.
- Its logs go through the C++ `FileLogger` to a pipe that one thread reads and forwards to
  structlog: a Python `logging.Logger` on the client costs 2.5-4x the throughput (every DEBUG
  line is formatted under the GIL) and can abort the interpreter at exit (pulsar-client-python#256).
- `error_for_result`: a `pulsar.Result` to the same typed errors (and attempt labels) as the
  WebSocket statuses. A callback from a C++ thread must never raise: an exception escaping one
  aborts the process, so every callback here catches what it can meet.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import math
import os
import re
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_aio  # type: ignore[import-untyped]

from streampair.config import ClientConfig
from streampair.errors import (
    BrokerUnavailable,
    CertificateError,
    HandshakeError,
    StreamError,
    error_for_status,
)
from streampair.logs import get_logger

log = get_logger("streampair.binary")

OK = _pulsar.Result.Ok

#: pulsar.Result name -> the HTTP status the WebSocket API answers for the same refusal, so that
#: both transports raise the same classes (errors.error_for_status) and count the same labels.
#: Anything unlisted (Timeout, ConnectError, ServiceUnitNotReady, ...) is a retryable 503.
_STATUS = {
    "ConsumerBusy": 409,
    "ProducerBusy": 409,
    "ProducerFenced": 409,
    "AuthenticationError": 401,
    "ErrorGettingAuthenticationData": 401,
    "AuthorizationError": 403,
    "TopicNotFound": 404,
    "SubscriptionNotFound": 404,
    "InvalidTopicName": 400,
    "InvalidConfiguration": 400,
    "InvalidUrl": 400,
    "NotAllowedError": 400,
    "OperationNotSupported": 400,
    "IncompatibleSchema": 400,
    "ConsumerAssignError": 400,
}


def result_name(result: Any) -> str:
    return str(getattr(result, "name", result))


def error_for_result(result: Any, role: str, detail: str = "") -> HandshakeError:
    """Our typed error for a refused create/subscribe (`role`: producer, consumer, reader)."""
    name = result_name(result)
    status = _STATUS.get(name, 503)
    text = " ".join(detail.split())[:300]
    if name == "TopicTerminated":
        text = f"topic terminated{': ' + text if text else ''}"  # errors.TopicTerminated by its words
    if name in ("Timeout", "ConnectError"):  # nobody answered: no refusal to speak of
        opening = f"{role}: no answer from the broker ({name})"
    else:
        opening = f"{role} refused by the broker ({name})"
    if status == 503 and name != "TopicTerminated":
        # The result says it all: the words of a connection error must not pass for a refusal
        # (error_for_status reads "terminated" in a 503's text as a terminated topic).
        return BrokerUnavailable(status, opening + (f": {text}" if text else ""))
    return error_for_status(status, role, text, refused=opening)


def error_for_exception(error: BaseException, role: str) -> StreamError:
    """The typed error for what the asyncio API raised (`PulsarException`, text `"13 ConsumerBusy"`
    or `"19 ProducerBusy: <the broker's explanation>"`)."""
    result = error.error() if isinstance(error, pulsar_aio.PulsarException) else type(error).__name__
    text = str(error)
    detail = text.split(":", 1)[1].strip() if ":" in text else ""
    if "certificate verify failed" in detail:  # a ConnectError to the C++ client; never retried
        return CertificateError(
            f"TLS certificate of the broker could not be verified ({detail[:200]}); "
            "set STREAM_CA_BUNDLE to the CA's PEM file if the broker uses a private CA"
        )
    return error_for_result(result, role, detail)


def message_id_text(native_id: Any) -> str:
    """base64 of the MessageIdData protobuf, as the WebSocket API writes ids. The producer's
    receipt and the delivered message give the same text; the WebSocket API adds batch_size=0,
    so its text for the same message differs, but each transport parses the other's."""
    return base64.b64encode(native_id.serialize()).decode("ascii")


def parse_message_id(text: str) -> Any:
    return pulsar.MessageId.deserialize(base64.b64decode(text, validate=True))


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Schedule `callback` on `loop` from a C++ thread; nothing when the loop is closed (no one
    waits any more). Never raises."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


async def await_native(start: Callable[[Callable[..., None]], None], wait_seconds: float) -> Any:
    """Run one `*_async(callback)` call of a `_pulsar` object and await its callback.

    Returns the value, raises `HandshakeError` for a result other than Ok, `TimeoutError` after
    `wait_seconds`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, value: Any) -> None:
        if future.done():
            return
        if result == OK:
            future.set_result(value)
        else:
            future.set_exception(error_for_result(result, "client"))

    def callback(result: Any, value: Any = None) -> None:  # on a C++ thread
        call_soon(loop, settle, result, value)

    start(callback)
    return await asyncio.wait_for(future, wait_seconds)


# -- the C++ client's logs -------------------------------------------------------------------

_LINE = re.compile(r"^\S+ \S+ (?P<level>\w+)\s+\[\d+\] (?P<where>\S+) \| (?P<text>.*)$")
#: A refused create/subscribe/lookup: the caller gets it as a typed error and logs it in its
#: words (a standby's attempt alone is 2 lines a second): debug here.
_EXPECTED = re.compile(
    r"ConsumerBusy|ProducerBusy|Failed partition-metadata lookup|Error Checking/Getting Partition"
    r"|Failed to create (producer|consumer|reader)|Received error response from server"
)
_native_logger: Any = None
_logger_lock = threading.Lock()


def _forward(fd: int) -> None:
    native = get_logger("pulsar-client")
    with open(fd, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _LINE.match(line.rstrip("\n"))
            level, text = (match["level"], match["text"]) if match else ("WARN", line.strip())
            if _EXPECTED.search(text):
                level = "DEBUG"
            emit = {"ERROR": native.error, "WARN": native.warning, "INFO": native.info}.get(level)
            with contextlib.suppress(Exception):  # a log line must never end the thread
                (emit or native.debug)("pulsar_client", detail=text[:1000])


def native_logger() -> Any:
    """One pipe and one reader thread per process (the C++ logger factory is process-global).
    WARN and above: INFO is a few lines per (re)connection, kept out of the services' logs."""
    global _native_logger
    with _logger_lock:
        if _native_logger is None:
            level = _pulsar.LoggerLevel.Warn
            if not Path("/proc/self/fd").is_dir():  # no /proc (macOS): plain text on stdout
                _native_logger = pulsar.ConsoleLogger(level)
            else:
                read_fd, write_fd = os.pipe()
                threading.Thread(
                    target=_forward, args=(read_fd,), name="pulsar-client-logs", daemon=True
                ).start()
                _native_logger = pulsar.FileLogger(level, f"/proc/self/fd/{write_fd}")
        return _native_logger


# -- the process's clients -------------------------------------------------------------------


def token_supplier(read: Callable[[], str | None]) -> Callable[[], str]:
    """A token callable for `AuthenticationToken`: called by a C++ thread at every (re)connection,
    so a rotated token file is used without a restart. Keeps the last good value when the file
    cannot be read (mid-rotation); never raises."""
    last = [""]

    def supply() -> str:
        with contextlib.suppress(Exception):
            last[0] = read() or last[0]
        return last[0]

    return supply


@dataclass(frozen=True)
class _Key:
    url: str
    token: str | None
    token_file: Path | None
    ca_bundle: Path | None
    timeout: float


class SharedClient:
    """One `pulsar.asyncio.Client`, shared by every Connector with the same URL and credentials."""

    def __init__(self, key: _Key, read_token: Callable[[], str | None]) -> None:
        self.key = key
        self.users = 0
        self.closed = False
        auth = None
        if key.token is not None:
            auth = pulsar.AuthenticationToken(key.token)
        elif key.token_file is not None:
            auth = pulsar.AuthenticationToken(token_supplier(read_token))
        self.operation_timeout = key.timeout
        self.aio = pulsar_aio.Client(
            key.url,
            authentication=auth,
            operation_timeout_seconds=max(1, math.ceil(key.timeout)),
            connection_timeout_ms=max(1000, int(key.timeout * 1000)),
            io_threads=1,
            message_listener_threads=1,
            tls_trust_certs_file_path=str(key.ca_bundle or system_ca_file() or "") or None,
            tls_validate_hostname=True,  # False by default in pulsar-client
            tls_allow_insecure_connection=False,
            logger=native_logger(),
            stats_interval_in_seconds=0,  # else a stats block is logged every 10 minutes
        )

    async def close(self, wait_seconds: float) -> None:
        """Close everything it made; a broker that does not answer cannot hold this up longer than
        `wait_seconds` (then `shutdown()`: immediate, no network)."""
        await asyncio.to_thread(self.close_blocking, wait_seconds)

    def close_blocking(self, wait_seconds: float) -> None:
        """Close, and return only once pulsar-client has let go of our callback.

        The C++ client calls the close callback from a thread of its own and drops it (taking
        the GIL) just after: if the interpreter is finalizing by then, that thread is killed
        inside C++ and the process aborts ("terminate called without an active exception",
        seen in 3 of 20 exits). So the callback is an object whose release we wait for too.
        """
        if self.closed:
            return
        self.closed = True
        called, released = threading.Event(), threading.Event()
        callback = _CloseCallback(called)
        weakref.finalize(callback, released.set)
        try:
            self.aio._client.close_async(callback)
        except Exception:  # already closed
            return
        del callback
        if called.wait(wait_seconds):
            released.wait(5.0)
        else:
            self.aio._client.shutdown()  # immediate, no network


class _CloseCallback:
    def __init__(self, called: threading.Event) -> None:
        self.called = called

    def __call__(self, result: Any) -> None:  # a C++ thread
        self.called.set()


def system_ca_file() -> str | None:
    """The system's CA bundle (as the WebSocket transport trusts through `ssl`); None: pulsar-client
    falls back to certifi's."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


_clients: dict[_Key, SharedClient] = {}
_owner_pid = os.getpid()


def shared_client(config: ClientConfig, read_token: Callable[[], str | None]) -> SharedClient:
    """The process's client for `config` (made now if there is none); `release` it when done."""
    global _owner_pid
    if os.getpid() != _owner_pid:  # forked: the parent's clients have no threads here
        _clients.clear()
        _owner_pid = os.getpid()
    key = _Key(
        config.url,
        config.auth_token,
        config.auth_token_file,
        config.ca_bundle,
        config.connect_timeout_seconds,
    )
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = SharedClient(key, read_token)
    client.users += 1
    return client


async def release(client: SharedClient, wait_seconds: float) -> None:
    client.users -= 1
    if client.users <= 0 and _clients.get(client.key) is client:
        del _clients[client.key]
        await client.close(wait_seconds)


@atexit.register
def _close_at_exit() -> None:
    """Clients nobody closed are closed before the interpreter finalizes (see close_blocking)."""
    if os.getpid() == _owner_pid:
        for client in list(_clients.values()):
            with contextlib.suppress(Exception):
                client.close_blocking(2.0)
