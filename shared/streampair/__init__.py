"""streampair: an asyncio client and service runtime for Apache Pulsar and Macrometa GDN streams.

from streampair import ClientConfig, Connector, Consumer, Producer

connector = Connector(ClientConfig(url="ws://localhost:8080", stream="orders"))
async with Producer(connector) as producer:
    await producer.send(b"hello")
"""

__version__ = "0.1.0"

from streampair.admin import StreamAdmin
from streampair.config import ClientConfig
from streampair.connection import ConnectionState, Connector
from streampair.consumer import Consumer, Reader
from streampair.errors import (
    BrokerUnavailable,
    CertificateError,
    ConnectionLost,
    HandshakeError,
    InvalidRequest,
    ProducerBusy,
    SendError,
    SendTimeout,
    StreamError,
    StreamNotFound,
    SubscriptionBusy,
    Unauthorized,
)
from streampair.message import Message, MessageId
from streampair.producer import Producer
from streampair.protocol import SubscriptionType
from streampair.settings import ServiceSettings, load_settings

__all__ = [
    "BrokerUnavailable",
    "CertificateError",
    "ClientConfig",
    "ConnectionLost",
    "ConnectionState",
    "Connector",
    "Consumer",
    "HandshakeError",
    "InvalidRequest",
    "Message",
    "MessageId",
    "Producer",
    "ProducerBusy",
    "Reader",
    "SendError",
    "SendTimeout",
    "ServiceSettings",
    "StreamAdmin",
    "StreamError",
    "StreamNotFound",
    "SubscriptionBusy",
    "SubscriptionType",
    "Unauthorized",
    "__version__",
    "load_settings",
]
