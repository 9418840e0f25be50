"""One writer task per WebSocket, so dispatch and commit code never await the network.

Dispatch pushes frames (already-encoded JSON bytes) and returns; the task drains the queue.
A slow client therefore costs memory, not latency for the others: flow control (receiver
queue size, pending publishes per producer) bounds how much can pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import WSMsgType, web


class Outbox:
    __slots__ = ("_closed", "_drained", "_event", "_queue", "_task", "_ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._queue: deque[bytes] = deque()
        self._event = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ws(self) -> web.WebSocketResponse:
        return self._ws

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def push(self, frame: bytes) -> None:
        if self._closed:
            return
        self._queue.append(frame)
        if not self._event.is_set():
            self._event.set()
            self._drained.clear()

    def __len__(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        queue = self._queue
        send = self._ws.send_frame
        try:
            while True:
                while queue:
                    await send(queue.popleft(), WSMsgType.TEXT)
                self._event.clear()
                self._drained.set()
                await self._event.wait()
        except (ConnectionError, RuntimeError):
            # The peer went away; the reading side notices and cleans up.
            self._closed = True
            queue.clear()
            self._drained.set()

    async def flush(self) -> None:
        """Let queued frames go out, for up to 2 s (used before a deliberate close)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._drained.wait()

    async def close(self) -> None:
        self._closed = True
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
