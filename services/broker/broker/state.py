"""What the request handlers share, stored once on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from broker.auth import Authenticator
from broker.broker import Broker
from broker.settings import BrokerSettings


@dataclass
class BrokerState:
    settings: BrokerSettings
    broker: Broker
    auth: Authenticator
    #: Every open WebSocket, closed with 1001 (going away) on shutdown.
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


STATE = web.AppKey("state", BrokerState)
