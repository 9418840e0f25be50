"""Who may publish and who may read (issue #19): the publish API's bearer token, refused
credentials that do not stop the services, and secrets rotated through files without a restart."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from harness import FAST, Cluster, Service, all_received, is_event, stop_producer_and_collect

HTTP_TOKEN = "publish-S3CRET-token"


async def post(svc: Service, authorization: str | None) -> tuple[int, dict[str, str], object]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(svc.url + "/messages", json={"payload": "hi"}, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_the_publish_api_needs_the_bearer_token_and_the_probes_stay_open(cluster: Cluster) -> None:
    await cluster.start_broker()
    producer = await cluster.start_producer(HTTP_AUTH_TOKEN=HTTP_TOKEN, PUBLISH_INTERVAL_SECONDS="3600")
    await producer.wait_http("/readyz", lambda status, _: status == 200)
    for authorization in (None, "Bearer wrong", f"Basic {HTTP_TOKEN}", HTTP_TOKEN, f"Bearer {HTTP_TOKEN}x"):
        status, headers, body = await post(producer, authorization)
        assert status == 401, authorization
        assert body == {
            "error": "POST /messages needs Authorization: Bearer <HTTP_AUTH_TOKEN>",
            "status": 401,
        }
        assert headers["WWW-Authenticate"] == 'Bearer realm="streampair"'
    status, _, body = await post(producer, f"Bearer {HTTP_TOKEN}")
    assert status == 201 and "messageId" in body  # type: ignore[operator]
    for path in ("/livez", "/readyz", "/metrics", "/status"):  # for the orchestrator and Prometheus
        assert (await producer.get_json(path))[0] == 200
    assert await producer.metric("streampair_http_unauthorized_total") == 5
    _, status_text = await producer.get_json("/status")
    await producer.stop()
    assert HTTP_TOKEN not in str(status_text) + "\n".join(producer.raw) + producer.stderr.decode()


async def test_the_publish_token_file_is_read_again_for_each_request(
    cluster: Cluster, tmp_path: Path
) -> None:
    token_file = tmp_path / "http-token"
    token_file.write_text("first-token\n")
    await cluster.start_broker()
    producer = await cluster.start_producer(
        HTTP_AUTH_TOKEN_FILE=str(token_file), PUBLISH_INTERVAL_SECONDS="3600"
    )
    await producer.wait_http("/readyz", lambda status, _: status == 200)
    assert (await post(producer, "Bearer first-token"))[0] == 201
    token_file.write_text("second-token\n")  # rotated, as kubelet swaps a mounted Secret
    assert (await post(producer, "Bearer first-token"))[0] == 401
    assert (await post(producer, "Bearer second-token"))[0] == 201


async def test_a_rotated_stream_token_file_is_used_without_a_restart_and_nothing_is_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    token_file = tmp_path / "stream-token"
    token_file.write_text("old-token\n")
    await cluster.start_broker(BROKER_AUTH_TOKEN="old-token")
    env = {"STREAM_AUTH_TOKEN_FILE": str(token_file), "RECONNECT_MAX_SECONDS": "0.5"}
    consumer = await cluster.start_consumer("consumer-1", **env)
    await consumer.wait_for(is_event("subscribed"))
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST, **env)
    await consumer.wait_for(is_event("received"))
    # The broker now accepts only the new token; the services hold the old one until the file changes.
    assert cluster.broker is not None
    await cluster.broker.stop()
    cluster.broker.env["BROKER_AUTH_TOKEN"] = "new-token"
    await cluster.start_broker()
    await consumer.wait_http("/readyz", lambda status, body: status == 503 and "401" in str(body))
    assert "STREAM_AUTH_TOKEN_FILE" in (await consumer.get_json("/readyz"))[1]["reason"]
    token_file.write_text("new-token\n")
    mark = len(consumer.lines)
    await consumer.wait_for(is_event("subscribed"), timeout=30, start=mark)
    await producer.wait_http("/readyz", lambda status, _: status == 200, timeout=30)
    expected = await stop_producer_and_collect(producer)
    await all_received(expected, consumer)
    text = "\n".join(consumer.raw + producer.raw)
    assert "old-token" not in text and "new-token" not in text
