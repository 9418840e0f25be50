import random

import pytest
from streampair.backoff import Backoff, jittered
from streampair.errors import (
    BrokerUnavailable,
    HandshakeError,
    InvalidRequest,
    NamespaceNotFound,
    ProducerBusy,
    StreamNotFound,
    SubscriptionBusy,
    TopicTerminated,
    Unauthorized,
    error_for_status,
)


@pytest.mark.parametrize(
    ("status", "role", "cls", "retryable"),
    [
        (409, "consumer", SubscriptionBusy, False),
        (409, "producer", ProducerBusy, False),
        (401, "consumer", Unauthorized, True),  # slowly: a rotated secret fixes it
        (403, "producer", Unauthorized, True),  # slowly: a granted permission fixes it
        (404, "reader", StreamNotFound, False),
        (400, "consumer", InvalidRequest, False),
        (429, "producer", BrokerUnavailable, True),
        (500, "consumer", BrokerUnavailable, True),
        (503, "consumer", BrokerUnavailable, True),
        (504, "reader", BrokerUnavailable, True),
        (418, "consumer", HandshakeError, False),
    ],
)
def test_status_mapping(status: int, role: str, cls: type[HandshakeError], retryable: bool) -> None:
    error = error_for_status(
        status, role, "Failed to create consumer: Exclusive consumer is already connected"
    )
    assert type(error) is cls
    assert error.status == status
    assert error.retryable is retryable
    assert f"HTTP {status}" in str(error)


NS = 'Failed to create producer/consumer: {"errorMsg":"Namespace not found","reqId":1}'


@pytest.mark.parametrize(
    ("status", "role", "body", "cls", "retryable"),
    [
        # Pulsar 4.0.7's own texts (scripts/pulsar/FINDINGS.md)
        (404, "producer", NS, NamespaceNotFound, False),
        (404, "consumer", NS, NamespaceNotFound, False),
        (404, "admin", "Namespace does not exist", NamespaceNotFound, False),
        (
            500,
            "reader",
            'Failed to create reader: {"errorMsg":"Namespace not found"}',
            NamespaceNotFound,
            False,
        ),
        (500, "reader", "Failed to create reader: Illegal base64 character 21", InvalidRequest, False),
        (
            500,
            "reader",
            "Failed to create reader: java.lang.IndexOutOfBoundsException: readerIndex(3)",
            InvalidRequest,
            False,
        ),
        (500, "reader", 'java.lang.NumberFormatException: For input string: "abc"', InvalidRequest, False),
        (500, "producer", "java.lang.IllegalArgumentException", InvalidRequest, False),
        (500, "reader", "Failed to create reader: Connection refused", BrokerUnavailable, True),
        (500, "consumer", "", BrokerUnavailable, True),
        (
            503,
            "producer",
            'Failed to create producer/consumer: {"errorMsg":"Topic was already terminated"}',
            TopicTerminated,
            False,
        ),
        (
            503,
            "producer",
            "Failed to create producer/consumer: backlog quota exceeded",
            BrokerUnavailable,
            True,
        ),
        (404, "producer", "", StreamNotFound, False),  # no explanation: a missing stream (Macrometa)
    ],
)
def test_status_and_explanation_mapping(
    status: int, role: str, body: str, cls: type[HandshakeError], retryable: bool
) -> None:
    error = error_for_status(status, role, body)
    assert type(error) is cls, error
    assert error.retryable is retryable
    if cls is NamespaceNotFound:
        assert "STREAM_TENANT" in str(error) and "STREAM_NAMESPACE" in str(error)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    b = Backoff(base=0.1, cap=2.0, rng=random.Random(7))
    ceilings = []
    for _ in range(10):
        ceilings.append(b.ceiling())
        delay = b.next_delay()
        assert 0.0 <= delay <= ceilings[-1]
    assert ceilings[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert ceilings[5:] == [2.0] * 5
    b.reset()
    assert b.ceiling() == 0.1


def test_full_jitter_spreads_delays() -> None:
    b = Backoff(base=1.0, cap=1.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9


def test_huge_attempt_counts_do_not_overflow() -> None:
    b = Backoff(base=0.1, cap=5.0, attempt=10_000)
    assert b.ceiling() == 5.0


def test_jittered_stays_within_spread() -> None:
    rng = random.Random(3)
    values = [jittered(1.0, 0.2, rng) for _ in range(500)]
    assert all(0.8 <= v <= 1.2 for v in values)
    assert max(values) - min(values) > 0.3


def test_a_refused_credential_is_never_retried_in_a_tight_loop() -> None:
    backoff = Backoff(base=0.01, cap=10.0)
    assert all(backoff.delay_after(Unauthorized(401, "no")) >= 5.0 for _ in range(20))
    assert backoff.delay_after(BrokerUnavailable(503, "busy")) <= 10.0
