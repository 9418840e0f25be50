"""Query parameters and paths: the handshake status Pulsar 4.0.7 answers for each, and the
embedded broker with it (scripts/pulsar/FINDINGS.md, "Query parameters" and "Paths").

Each case is one upgrade; 101 cases prove a value Pulsar accepts is not refused."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conformance.conftest import Target, unique

pytestmark = pytest.mark.ws_only(
    "WebSocket query parameters and paths: the client-level behaviours are in test_client.py"
)

PRODUCER = [
    ({"compressionType": "LZ4"}, 101),
    ({"compressionType": "ZSTD"}, 101),
    ({"compressionType": "lz4"}, 400),
    ({"compressionType": "Bogus"}, 400),
    ({"messageRoutingMode": "CustomPartition"}, 101),
    ({"messageRoutingMode": "Bogus"}, 400),
    ({"hashingScheme": "Murmur3_32Hash"}, 101),
    ({"hashingScheme": "Bogus"}, 400),
    ({"sendTimeoutMillis": "0"}, 101),
    ({"sendTimeoutMillis": "abc"}, 400),
    ({"sendTimeoutMillis": "-1"}, 400),
    ({"sendTimeoutMillis": "99999999999"}, 400),
    ({"initialSequenceId": "abc"}, 400),
    ({"initialSequenceId": "99999999999"}, 101),
    ({"producerName": ""}, 400),
    ({"batchingEnabled": "yes"}, 101),
    ({"batchingEnabled": "true", "batchingMaxMessages": "abc"}, 400),
    ({"maxPendingMessages": "abc"}, 101),  # ignored while batching is off
    ({"encryptionKeys": "k1"}, 500),  # no crypto key reader configured
]

CONSUMER = [
    ({"ackTimeoutMillis": "0"}, 101),
    ({"ackTimeoutMillis": "1000"}, 101),
    ({"ackTimeoutMillis": "999"}, 400),
    ({"ackTimeoutMillis": "-1"}, 400),
    ({"ackTimeoutMillis": "abc"}, 400),
    ({"subscriptionMode": "NonDurable"}, 101),
    ({"subscriptionMode": "Bogus"}, 400),
    ({"subscriptionInitialPosition": "Earliest"}, 101),
    ({"subscriptionInitialPosition": "earliest"}, 400),
    ({"receiverQueueSize": "0"}, 101),
    ({"receiverQueueSize": "5000"}, 101),
    ({"receiverQueueSize": "-1"}, 400),
    ({"receiverQueueSize": ""}, 400),
    ({"consumerName": ""}, 400),
    ({"priorityLevel": "-1"}, 400),
    ({"priorityLevel": "abc"}, 400),
    ({"negativeAckRedeliveryDelay": "-1"}, 400),
    ({"maxRedeliverCount": "0"}, 400),
    ({"maxRedeliverCount": "abc"}, 400),
    ({"deadLetterTopic": "x"}, 400),  # without maxRedeliverCount
    ({"maxRedeliverCount": "3", "deadLetterTopic": "x"}, 101),
    ({"pullMode": "yes"}, 101),  # Boolean.parseBoolean: never an error
    ({"cryptoFailureAction": "Bogus"}, 101),  # logged and ignored
]

READER = [
    ({"messageId": "earliest"}, 101),
    ({"messageId": ""}, 101),
    ({"messageId": "Earliest"}, 500),  # the reader answers every failure with 500
    ({"messageId": "garbage!"}, 500),
    ({"messageId": "AAAA"}, 500),  # base64, but not a message id
    ({"receiverQueueSize": "abc"}, 500),
    ({"receiverQueueSize": "-1"}, 500),
    ({"readerName": ""}, 101),
    ({"cryptoFailureAction": "Bogus"}, 101),
]


async def status(target: Target, path: str, params: dict[str, str] | None = None) -> int:
    try:
        ws = await target.session.ws_connect(target.ws + path, params=params)
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    await ws.close()
    return 101


def _id(case: tuple[dict[str, str], int]) -> str:
    return "&".join(f"{k}={v}" for k, v in case[0].items()) + f"->{case[1]}"


@pytest.mark.parametrize("case", PRODUCER, ids=_id)
async def test_producer_parameter(target: Target, case: tuple[dict[str, str], int]) -> None:
    params, expected = case
    assert await status(target, target.path("producer", unique("pp")), params) == expected


@pytest.mark.parametrize("case", CONSUMER, ids=_id)
async def test_consumer_parameter(target: Target, case: tuple[dict[str, str], int]) -> None:
    params, expected = case
    assert await status(target, target.path("consumer", unique("cp"), "s"), params) == expected


@pytest.mark.parametrize("case", READER, ids=_id)
async def test_reader_parameter(target: Target, case: tuple[dict[str, str], int]) -> None:
    params, expected = case
    assert await status(target, target.path("reader", unique("rp")), params) == expected


async def test_paths_are_taken_apart_as_pulsar_does(target: Target) -> None:
    topic = unique("path")
    base = "/ws/v2/{role}/{domain}/public/default/" + topic
    # A producer's or reader's topic may contain '/'.
    assert await status(target, base.format(role="producer", domain="persistent") + "/x") == 101
    assert await status(target, base.format(role="reader", domain="persistent") + "/x") == 101
    assert await status(target, base.format(role="producer", domain="persistent") + "/") == 101
    # A consumer has exactly one segment after its topic (a trailing '/' is one more).
    assert await status(target, base.format(role="consumer", domain="persistent") + "/s/x") == 400
    assert await status(target, base.format(role="consumer", domain="persistent") + "/s/") == 400
    assert await status(target, base.format(role="consumer", domain="persistent")) == 400
    # Too short for Pulsar's path parsing: 500; an unknown role: 404.
    assert await status(target, "/ws/v2/producer/persistent/public/default") == 500
    assert await status(target, "/ws/v2/reader/persistent/public") == 500
    assert await status(target, "/ws/v2/publisher/persistent/public/default/" + topic) == 404
    assert await status(target, base.format(role="producer", domain="non-persistent")) == 101
    # An unknown domain, or a tenant Pulsar cannot parse, fails in path parsing: 500.
    assert await status(target, base.format(role="producer", domain="bogus")) == 500
    assert await status(target, f"/ws/v2/producer/persistent/bad%20tenant/default/{topic}") == 500
    # A colon is a valid topic character.
    assert await status(target, target.path("producer", topic + ":x")) == 101


async def test_producer_name_in_use_is_409(target: Target) -> None:
    topic = unique("pname")
    first = await target.producer(topic, producerName="only-one")
    assert await status(target, target.path("producer", topic), {"producerName": "only-one"}) == 409
    await first.close()


async def test_multi_topic_consumer_malformed_requests(target: Target) -> None:
    """Malformed v3 (multi-topic consumer) requests; working ones are in test_subscription_types."""
    assert await status(target, "/ws/v3/consumer/s") == 500  # neither topics nor topicsPattern
    both = {"topics": unique("a"), "topicsPattern": "x.*"}
    assert await status(target, "/ws/v3/consumer/s", both) == 500
    assert await status(target, f"/ws/v3/producer/persistent/public/default/{unique('v3')}") == 404
