"""Our client on both targets: every refusal the WebSocket handshake can bring is classified,
retry or stop, from the status and (for 404, 500 and 503) the broker's explanation, which the
Connector reads with a second plain request because aiohttp keeps no body of a refused upgrade.

Statuses neither target can be made to answer here (401/403 need authentication configured on
Pulsar, 429/504 a loaded broker) are decided in tests/unit/test_errors_backoff.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streampair.config import ClientConfig
from streampair.connection import Connector
from streampair.errors import InvalidRequest, NamespaceNotFound, SubscriptionBusy, TopicTerminated

from harness import Cluster
from tests.conformance.conftest import Target, publish, unique


def connector(target: Target, topic: str, **settings: str) -> Connector:
    return Connector(ClientConfig(backend="pulsar", url=target.ws, stream=topic, **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("where", [{"tenant": "nosuchtenant"}, {"namespace": "nosuchns"}])
@pytest.mark.parametrize(("kind", "status"), [("producer", 404), ("consumer", 404), ("reader", 500)])
async def test_missing_tenant_or_namespace_stops_and_names_the_settings(
    target: Target, where: dict[str, str], kind: str, status: int
) -> None:
    client = connector(target, unique("ns"), **where)
    try:
        with pytest.raises(NamespaceNotFound) as refused:
            await client.open(kind, "s" if kind == "consumer" else None)  # type: ignore[arg-type]
    finally:
        await client.close()
    assert refused.value.status == status  # Pulsar's reader answers 500 for everything
    assert not refused.value.retryable
    assert "STREAM_TENANT" in str(refused.value) and "STREAM_NAMESPACE" in str(refused.value)


@pytest.mark.parametrize("start", ["garbage!", "AAAA", "Earliest"])
async def test_reader_with_a_bad_start_position_is_not_retried(target: Target, start: str) -> None:
    client = connector(target, unique("rd"))
    try:
        with pytest.raises(InvalidRequest) as refused:
            await client.open("reader", params={"messageId": start})
    finally:
        await client.close()
    assert refused.value.status == 500 and not refused.value.retryable


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
        with pytest.raises(SubscriptionBusy):
            await client.open("consumer", "s")
    finally:
        await client.close()
        await holder.close()


async def test_producer_on_a_terminated_topic_stops(target: Target) -> None:
    topic = unique("term")
    await publish(await target.producer(topic), ["last"])
    async with target.session.post(target.admin_url(topic) + "/terminate") as response:
        assert response.status == 200
    client = connector(target, topic)
    try:
        with pytest.raises(TopicTerminated) as refused:
            await client.open("producer")
    finally:
        await client.close()
    assert refused.value.status == 503 and not refused.value.retryable


@pytest.mark.parametrize("service", ["consumer", "producer"])
async def test_services_exit_with_one_line_naming_the_setting(
    target: Target, tmp_path: Path, service: str
) -> None:
    cluster = Cluster(tmp_path, STREAM_URL=target.ws, STREAM_NAME=unique("svc"), STREAM_NAMESPACE="nosuchns")
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
