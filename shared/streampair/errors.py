"""Typed errors: what went wrong, and whether trying again can help.

The WebSocket API reports refusals as a plain HTTP status on the upgrade (no 101), so the
mapping from status to error class is the heart of this module. The binary transport maps
pulsar-client's results to the same statuses (binary_native.py), so both raise the same classes.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error the stream client raises."""

    #: True when the same operation may succeed later (network blip, broker restart).
    retryable: bool = False
    #: The least wait before trying again: some refusals must not be retried in a tight loop.
    min_retry_delay: float = 0.0


class HandshakeError(StreamError):
    """The broker refused a producer, consumer or reader: over WebSocket the upgrade's HTTP
    status; over the binary protocol the status the WebSocket API answers for the same refusal."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InvalidRequest(HandshakeError):
    """400: a bad query parameter or name (for example an unknown subscriptionType)."""


class Unauthorized(HandshakeError):
    """401 (not authenticated: credential missing, wrong or expired) or 403 (authenticated, but
    not allowed this). Retried, slowly: a rotated secret or a granted permission fixes it."""

    retryable = True
    min_retry_delay = 5.0


class CredentialUnavailable(StreamError):
    """The file that holds the token or API key cannot be read (it may be in the middle of a rotation)."""

    retryable = True
    min_retry_delay = 1.0


class StreamNotFound(HandshakeError):
    """404: the stream does not exist and the broker does not create it on first use."""


class NamespaceNotFound(StreamNotFound):
    """404 (producer, consumer, admin) or 500 (reader): the tenant or namespace does not exist.
    Pulsar creates topics on first use but never tenants or namespaces: a wrong
    STREAM_TENANT/STREAM_NAMESPACE, not something waiting can fix."""


class TopicTerminated(HandshakeError):
    """503 on a producer: the topic was terminated (admin `terminate`); it takes no more messages."""


class SubscriptionBusy(HandshakeError):
    """409 on a consumer: another consumer holds the Exclusive subscription (Pulsar ConsumerBusy)."""


class ProducerBusy(HandshakeError):
    """409 on a producer: the producer name is in use or the producer was fenced."""


class BrokerUnavailable(HandshakeError):
    """429, 5xx or no connection at all: the broker cannot serve us now; retry with backoff."""

    retryable = True


class ConnectionLost(BrokerUnavailable):
    """An established connection closed or stopped answering heartbeats."""

    def __init__(self, message: str = "connection to the broker was lost") -> None:
        super().__init__(0, message)


class CertificateError(StreamError):
    """The broker's TLS certificate could not be verified. Never retried, never in plain text."""


class SendError(StreamError):
    """The broker answered one message with `send-error:<code>`; only that message failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"send-error:{code}: {message}" if message else f"send-error:{code}")
        self.code = code


class SendTimeout(StreamError):
    """No answer for a message within the send timeout.

    `written` tells whether the frame reached the broker's connection: then the message may
    have been published, and a retry may duplicate it.
    """

    def __init__(self, message: str, written: bool = True) -> None:
        super().__init__(message)
        self.written = written


class SendUnconfirmed(StreamError):
    """The producer closed after writing the message and before the broker answered.

    The message may have been published: a caller that retries may duplicate it.
    """


class MessageTooLarge(StreamError):
    """The message's frame is larger than the broker accepts (STREAM_MAX_FRAME_BYTES).

    Raised before anything is sent, or when the broker closed the connection on the frame
    (close code 1009): the message fails alone, it is never resent. On the binary transport:
    when pulsar-client refuses it against the broker's maxMessageSize (5 MiB by default).
    """

    def __init__(self, size: int, limit: int, text: str | None = None) -> None:
        super().__init__(
            text
            or f"message too large: its frame is {size} bytes, over the broker's limit of {limit} bytes "
            "(STREAM_MAX_FRAME_BYTES)"
        )
        self.size = size
        self.limit = limit


class InvalidMessage(StreamError):
    """The message cannot be encoded for the broker (say, text with a lone surrogate)."""


#: Pulsar's words for a missing tenant or namespace (WebSocket and admin answers).
_NO_NAMESPACE = ("namespace not found", "namespace does not exist", "tenant does not exist")
#: A reader's 500 that names its bad request (an undecodable `messageId`) rather than a fault.
_BAD_READER_REQUEST = (
    "base64",
    "indexoutofbounds",
    "invalidprotocolbuffer",
    "not a message id",
    "numberformat",
)


def error_for_status(status: int, role: str, body: str = "", *, refused: str | None = None) -> HandshakeError:
    """Map a refused handshake (or admin call) to its typed error: what it is, whether retrying
    can help. Every status Pulsar 4.0.7's WebSocket handlers answer is decided here.

    `role` is `producer`, `consumer`, `reader` or `admin`: a 409 means something different to
    each, and Pulsar's reader answers every failure with 500. `body` is the broker's
    explanation (Pulsar: `Failed to create producer/consumer: ...`); without it (aiohttp keeps
    none of a refused upgrade unless the Connector fetched it) a 404 is a missing stream and
    a 500 a broker fault. `refused` replaces the opening words (the binary transport names the
    broker's result instead of an HTTP status it never saw).
    """
    detail = " ".join(body.split())[:300]
    opening = refused or f"{role} handshake refused with HTTP {status}"
    message = opening + (f": {detail}" if detail else "")
    lowered = detail.lower()
    if status in (404, 500) and any(words in lowered for words in _NO_NAMESPACE):
        return NamespaceNotFound(
            status,
            f"{message}; the tenant or namespace does not exist: check STREAM_TENANT and STREAM_NAMESPACE "
            "(Pulsar creates topics on first use, never tenants or namespaces)",
        )
    if status == 500 and role == "reader" and any(words in lowered for words in _BAD_READER_REQUEST):
        return InvalidRequest(status, message)
    if status == 500 and "illegalargumentexception" in lowered:
        return InvalidRequest(status, message)  # Pulsar could not parse the path (bad names)
    if status == 503 and "terminated" in lowered:
        return TopicTerminated(status, message)
    if status == 409:
        return SubscriptionBusy(status, message) if role == "consumer" else ProducerBusy(status, message)
    if status in (401, 403):
        return Unauthorized(status, message)
    if status == 404:
        return StreamNotFound(status, message)
    if status == 400:
        return InvalidRequest(status, message)
    if status == 429 or status >= 500:
        return BrokerUnavailable(status, message)
    return HandshakeError(status, message)
