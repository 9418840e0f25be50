"""Our client on every target: each refusal is classified, retry or stop, with the same error
classes on both transports. Over WebSocket from the handshake's status and (for 404, 500 and
503) the broker's explanation, which the Connector reads with a second plain request because
aiohttp keeps no body of a refused upgrade; over the binary protocol from pulsar-client's
result and the broker's text (streampair/binary_native.py). The WebSocket statuses are kept
in the errors' `status` on both, except where Pulsar's WebSocket API has its own (its reader
answers every failure with 500).

Statuses neither target can be made to answer here (401/403 need authentication configured on
Pulsar, 429/504 a loaded broker) are decided in tests/unit/test_errors_backoff.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streampair.connection import Connector
from streampair.consumer import Consumer, Reader
from streampair.errors import (
    InvalidRequest,
    NamespaceNotFound,
    ProducerBusy,
    StreamError,
    SubscriptionBusy,
    TopicTerminated,
)
from streampair.producer import Producer

from harness import Cluster
from tests.conformance.conftest import Target, publish, unique


def connector(target: Target, topic: str, **settings: str) -> Connector:
    return Connector(target.settings(topic, **settings))


async def refusal(kind: str, client: Connector, start: str = "earliest") -> StreamError:
    """What one attempt of a producer, consumer or reader through the library is refused with."""
    if kind == "producer":
        async with Producer(client) as producer:
            with pytest.raises(StreamError) as refused:
                await producer.send(b"x")  # fails with the refusal once the producer gives up
            assert producer.fatal is refused.value
        return refused.value
    subscriber = Consumer(client, "s") if kind == "consumer" else Reader(client, start)
    try:
        with pytest.raises(StreamError) as refused:
            await subscriber.connect()
    finally:
        await subscriber.close()
    return refused.value


@pytest.mark.parametrize("where", [{"tenant": "nosuchtenant"}, {"namespace": "nosuchns"}])
@pytest.mark.parametrize("kind", ["producer", "consumer", "reader"])
async def test_missing_tenant_or_namespace_stops_and_names_the_settings(
    target: Target, where: dict[str, str], kind: str
) -> None:
    client = connector(target, unique("ns"), **where)
    try:
        refused = await refusal(kind, client)
    finally:
        await client.close()
    assert isinstance(refused, NamespaceNotFound), refused
    # Pulsar's WebSocket reader answers 500 for everything; the binary protocol says TopicNotFound.
    assert refused.status == (500 if kind == "reader" and target.wire == "websocket" else 404)
    assert not refused.retryable
    assert "STREAM_TENANT" in str(refused) and "STREAM_NAMESPACE" in str(refused)


@pytest.mark.parametrize("start", ["garbage!", "AAAA", "Earliest"])
async def test_reader_with_a_bad_start_position_is_not_retried(target: Target, start: str) -> None:
    client = connector(target, unique("rd"))
    try:
        refused = await refusal("reader", client, start)
    finally:
        await client.close()
    assert isinstance(refused, InvalidRequest), refused
    assert refused.status == (500 if target.wire == "websocket" else 400) and not refused.retryable


@pytest.mark.ws_only("compressionType is a WebSocket query parameter the library does not send")
async def test_bad_parameter_is_invalid_request(target: Target) -> None:
    client = connector(target, unique("bad"))
    try:
        with pytest.raises(InvalidRequest) as refused:
            await client.open("producer", params={"compressionType": "Bogus"})
    finally:
        await client.close()
    assert refused.value.status == 400 and not refused.value.retryable


async def test_busy_subscription_is_subscription_busy(target: Target) -> None:
    topic = unique("busy")
    holder = await target.consumer(topic, "s")
    client = connector(target, topic)
    try:
        refused = await refusal("consumer", client)
    finally:
        await client.close()
        await holder.close()
    assert isinstance(refused, SubscriptionBusy) and refused.status == 409 and not refused.retryable


async def test_producer_name_in_use_is_producer_busy(target: Target) -> None:
    topic = unique("pname")
    holder = await target.producer(topic, producerName="taken")
    client = connector(target, topic)
    try:
        async with Producer(client, name="taken") as producer:
            with pytest.raises(ProducerBusy) as refused:
                await producer.send(b"x")
    finally:
        await client.close()
        await holder.close()
    assert refused.value.status == 409 and not refused.value.retryable


async def test_producer_on_a_terminated_topic_stops(target: Target) -> None:
    topic = unique("term")
    await publish(await target.producer(topic), ["last"])
    async with target.session.post(target.admin_url(topic) + "/terminate") as response:
        assert response.status == 200
    client = connector(target, topic)
    try:
        refused = await refusal("producer", client)
    finally:
        await client.close()
    assert isinstance(refused, TopicTerminated), refused
    assert refused.status == 503 and not refused.retryable


@pytest.mark.parametrize("service", ["consumer", "producer"])
async def test_services_exit_with_one_line_naming_the_setting(
    target: Target, tmp_path: Path, service: str
) -> None:
    cluster = Cluster(tmp_path, **target.stream_env, STREAM_NAME=unique("svc"), STREAM_NAMESPACE="nosuchns")
    try:
        start = cluster.start_consumer("consumer-1") if service == "consumer" else cluster.start_producer()
        svc = await start
        assert await svc.wait_exit(timeout=30) == 1
        errors = [line for line in svc.lines if line.get("level") == "error"]
        assert len(errors) == 1, errors
        assert "STREAM_NAMESPACE" in errors[0]["error"], errors[0]
        assert errors[0]["error_type"] == "NamespaceNotFound"
    finally:
        await cluster.stop()
