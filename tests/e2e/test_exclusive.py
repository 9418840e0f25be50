"""The Exclusive story with real processes: one active, one refused and waiting, takeover, nothing lost."""

from __future__ import annotations

import re
import signal

from harness import (
    FAST,
    Cluster,
    active_and_standby,
    all_received,
    is_busy_warning,
    stop_producer_and_collect,
)


async def test_one_active_one_standby_then_sigkill_takeover_loses_nothing(cluster: Cluster) -> None:
    await cluster.start_broker()
    # Consumers first: a new subscription starts at the end of the stream, as in Pulsar.
    c1 = await cluster.start_consumer("consumer-1")
    c2 = await cluster.start_consumer("consumer-2")
    active, standby = await active_and_standby(c1, c2)
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)

    warning = await standby.wait_for(is_busy_warning)
    assert warning["message"] == (
        "another consumer holds Exclusive subscription 'consumer-subscription' "
        "on 'streamQuickstart'; waiting as standby"
    )
    await active.wait_for(lambda line: line.get("event") == "received")
    _, status = await standby.get_json("/status")
    assert status["counters"]["rejections"] >= 1
    assert (await standby.get_json("/readyz"))[0] == 200  # a standby is Ready
    metrics_active = await _metrics(active)
    metrics_standby = await _metrics(standby)
    assert re.search(r'streampair_consumer_active\{[^}]*subscription_type="Exclusive"\} 1\.0', metrics_active)
    assert re.search(r"streampair_consumer_active\{[^}]*\} 0\.0", metrics_standby)
    assert re.search(
        r'streampair_subscription_rejections_total\{reason="consumer_busy"\} [1-9]', metrics_standby
    )
    assert standby.events("received") == []

    active.signal(signal.SIGKILL)
    await standby.wait_for(lambda line: line.get("event") == "took_over", timeout=15)
    await standby.wait_for(lambda line: line.get("event") == "received")

    published = await stop_producer_and_collect(producer)
    got = await all_received(published, active, standby)
    assert set(got) >= published
    _, status = await standby.get_json("/status")
    assert status["role"] == "active"


async def test_sigterm_of_the_active_consumer_exits_cleanly_and_the_standby_takes_over(
    cluster: Cluster,
) -> None:
    await cluster.start_broker()
    # Consumers first: a new subscription starts at the end of the stream, as in Pulsar.
    c1 = await cluster.start_consumer("consumer-1")
    c2 = await cluster.start_consumer("consumer-2")
    active, standby = await active_and_standby(c1, c2)
    producer = await cluster.start_producer(PUBLISH_INTERVAL_SECONDS=FAST)
    await active.wait_for(lambda line: line.get("event") == "received")

    active.signal(signal.SIGTERM)
    assert await active.wait_exit(10) == 0  # the graceful shutdown fits docker stop's 10 s
    await standby.wait_for(lambda line: line.get("event") == "took_over", timeout=15)

    published = await stop_producer_and_collect(producer)
    await all_received(published, active, standby)


async def test_on_busy_exit_ends_the_second_consumer_with_status_3(cluster: Cluster) -> None:
    await cluster.start_broker()
    await cluster.start_producer()
    first = await cluster.start_consumer("consumer-1")
    await first.wait_for(lambda line: line.get("event") == "subscribed")
    second = await cluster.start_consumer("consumer-2", ON_BUSY="exit")
    assert await second.wait_exit(15) == 3
    line = await second.wait_for(lambda line: line.get("level") == "error")
    assert line["event"] == "subscription_busy" and "exiting (ON_BUSY=exit)" in line["message"]


async def _metrics(service: object) -> str:
    import aiohttp

    url = service.url + "/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()
