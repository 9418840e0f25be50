"""The Exclusive scenario in Macrometa mode against the embedded broker's Macrometa dialect."""

from __future__ import annotations

import signal

import aiohttp

from harness import (
    FAST,
    Cluster,
    active_and_standby,
    all_received,
    is_busy_warning,
    stop_producer_and_collect,
)

API_KEY = "demo_tenant.streampair-key.Zm9vYmFyLXNlY3JldC0xMjM0"


async def test_exclusive_story_with_api_key_otp_and_c8_naming(cluster: Cluster) -> None:
    await cluster.start_broker(BROKER_AUTH_TOKEN=API_KEY)
    env = {
        "STREAM_BACKEND": "macrometa",
        "STREAM_URL": f"http://127.0.0.1:{cluster.broker_port}",
        "C8_API_KEY": API_KEY,
        "C8_FABRIC": "_system",
        "STREAM_GLOBAL": "true",
    }
    c1 = await cluster.start_consumer("consumer-1", **env)
    c2 = await cluster.start_consumer("consumer-2", **env)
    active, standby = await active_and_standby(c1, c2)
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST, **env)
    await standby.wait_for(is_busy_warning)
    await active.wait_for(lambda line: line.get("event") == "received")

    # The stream exists under Macrometa's naming, in the tenant taken from the API key.
    base = f"http://127.0.0.1:{cluster.broker_port}"
    headers = {"Authorization": f"apikey {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/_fabric/_system/_api/streams?global=true", headers=headers) as r:
            assert r.status == 200
            assert "c8globals.streamQuickstart" in await r.text()
        async with session.get(f"{base}/_fabric/_system/_api/streams?global=true") as r:
            assert r.status == 401  # no key, no answer

    active.signal(signal.SIGKILL)
    await standby.wait_for(lambda line: line.get("event") == "took_over", timeout=15)
    published = await stop_producer_and_collect(producer)
    await all_received(published, active, standby)
    for svc in (producer, c1, c2):
        assert API_KEY.split(".")[-1] not in "\n".join(svc.raw) + svc.stderr.decode()
