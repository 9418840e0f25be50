"""A loopback TCP proxy that injects network faults between the services and the broker.

`FaultProxy` listens on 127.0.0.1 only and forwards every accepted connection to the broker.
Two faults apply to the connections open at that moment (new ones are forwarded normally,
so the services can reconnect through the proxy):

- `drop()`: abort both sides at once (RST), as when a NAT or load balancer forgets a flow.
- `freeze()`: stop forwarding in both directions without closing anything (a half-open
  connection: the peer vanished, no FIN, no RST). Bytes that arrive are read and discarded,
  so only a heartbeat can tell. The proxy records when each side gives up (closes its end):
  that is the detection time of the service (client side) and of the broker (upstream side).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field


@dataclass
class Link:
    """One proxied connection: the service's socket and ours to the broker."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen_at: float | None = None
    client_closed_at: float | None = None  # the service closed its end (or reset it)
    upstream_closed_at: float | None = None  # the broker closed its end
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.links: list[Link] = []
        #: When set, every byte forwarded from the services to the broker is appended here
        #: (the security tests read the OTPs the services used out of it).
        self.recorded: bytearray | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            link.abort()
            for task in link.tasks:
                task.cancel()
        await asyncio.gather(*(t for link in self.links for t in link.tasks), return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def live(self) -> list[Link]:
        return [link for link in self.links if link.client_closed_at is None and not link.frozen]

    def drop(self) -> int:
        """Reset every live connection; returns how many."""
        victims = self.live()
        for link in victims:
            link.abort()
        return len(victims)

    def freeze(self) -> list[Link]:
        """Black-hole every live connection (no FIN, no RST); returns them."""
        now = time.monotonic()
        victims = self.live()
        for link in victims:
            link.frozen_at = now
        return victims

    def release(self, links: list[Link]) -> None:
        """Close frozen connections for good (after the measurement)."""
        for link in links:
            link.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # the broker is down: refuse, as it would
            return
        link = Link(writer, up_writer)
        self.links.append(link)
        self.links = [x for x in self.links if x.client_closed_at is None or x.upstream_closed_at is None]
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, from_client=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, from_client=False)),
        ]

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if link.frozen:
                    continue  # swallowed: the other side never hears of it
                if from_client and self.recorded is not None:
                    self.recorded.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            now = time.monotonic()
            if from_client:
                link.client_closed_at = link.client_closed_at or now
            else:
                link.upstream_closed_at = link.upstream_closed_at or now
            if not link.frozen:
                # A normal close (or a drop) propagates: close the other side too.
                with contextlib.suppress(Exception):
                    writer.close()
