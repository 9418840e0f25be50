"""The binary transport when the connection goes: what pulsar-client does by itself (reconnect,
resend) and what the library adds (a consumer that silently lost its Exclusive subscription
becomes a standby; nothing is lost across a broker restart; closing never hangs on a dead broker).

The first test uses the session's Pulsar; the restart test starts a Pulsar of its own, because it
stops and starts it (`scripts/pulsar-standalone stop` + `start`, same data and ports).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from streampair import ClientConfig, ConnectionState, Connector, Consumer, Producer
from streampair.errors import SubscriptionBusy

from harness.pulsar import SCRIPT, PulsarEndpoints, PulsarStandalone

pytestmark = pytest.mark.pulsar


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def config(pulsar: PulsarEndpoints, stream: str, **extra: object) -> ClientConfig:
    return ClientConfig(
        url=pulsar.binary,
        admin_url=pulsar.http,
        stream=stream,
        reconnect_max_seconds=1.0,
        **extra,  # type: ignore[arg-type]
    )


async def test_a_consumer_that_silently_lost_its_exclusive_subscription_becomes_a_standby(
    pulsar: PulsarEndpoints,
) -> None:
    """pulsar-client retries ConsumerBusy silently for ever once a consumer was created; the
    library notices the lasting disconnection and its next attempt says SubscriptionBusy."""
    stream, sub = unique("cutoff"), unique("sub")
    first_connector = Connector(config(pulsar, stream))
    # Another timeout: another pulsar-client, its own connection (as another process would have).
    second_connector = Connector(config(pulsar, stream, connect_timeout_seconds=9))
    first = Consumer(first_connector, sub)
    standby = Consumer(second_connector, sub)
    states: list[ConnectionState] = []
    first.on_state = states.append
    await first.connect()
    iteration = asyncio.create_task(anext(aiter(first)))
    try:
        unload = f"{pulsar.http}/admin/v2/persistent/public/default/{stream}/unload"
        won = False
        for _ in range(5):  # the standby, retrying fast, usually wins at the first unload
            async with aiohttp.ClientSession() as session, session.put(unload) as response:
                assert response.status == 204  # the broker drops every consumer of the topic
            deadline = time.monotonic() + 2
            while not won and time.monotonic() < deadline:
                try:
                    await standby.connect()
                    won = True
                except SubscriptionBusy:
                    await asyncio.sleep(0.005)
            if won:
                break
        assert won, "the first consumer got its subscription back before the standby five times"
        with pytest.raises(SubscriptionBusy):
            await asyncio.wait_for(iteration, 15)
        assert any(not s.connected for s in states)  # it said so while it was cut off
    finally:
        iteration.cancel()
        for consumer in (first, standby):
            await consumer.close()
        for connector in (first_connector, second_connector):
            await connector.close()


@pytest.fixture
def own_pulsar() -> Iterator[tuple[PulsarEndpoints, PulsarStandalone]]:
    standalone = PulsarStandalone()
    try:
        yield PulsarEndpoints(standalone.start(), standalone.binary_url), standalone
    finally:
        standalone.stop()


def script(standalone: PulsarStandalone, command: str) -> None:
    import subprocess

    done = subprocess.run(
        [str(SCRIPT), command], env=standalone.env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


RATE = 20  # messages per second


@pytest.mark.timeout(600)
async def test_a_broker_restart_under_load_loses_nothing(
    own_pulsar: tuple[PulsarEndpoints, PulsarStandalone],
) -> None:
    pulsar, standalone = own_pulsar
    stream, sub = unique("restart"), unique("sub")
    connector = Connector(config(pulsar, stream, shutdown_timeout_seconds=3))
    bystander_connector = Connector(config(pulsar, stream, connect_timeout_seconds=9))
    consumer = Consumer(connector, sub)
    await consumer.connect()
    bystander = Producer(bystander_connector)
    await bystander.start()
    # A send timeout longer than the outage: every message must get through, resent if need be.
    producer = Producer(connector, send_timeout=300)
    await producer.start()
    received: dict[int, float] = {}
    futures: list[asyncio.Future[str]] = []
    stop = asyncio.Event()
    down = asyncio.Event()
    consumer.on_state = lambda state: None if state.connected else down.set()

    async def produce() -> None:
        seq = 0
        while not stop.is_set():
            futures.append(await producer.send_async(f"m{seq}", {"seq": str(seq)}))
            seq += 1
            await asyncio.sleep(1 / RATE)

    arrived = asyncio.Event()

    async def consume() -> None:
        async for message in consumer:
            received.setdefault(int(message.properties["seq"]), time.monotonic())
            arrived.set()
            await consumer.ack(message)

    async def until(condition: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                arrived.clear()
                await arrived.wait()

    tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]
    try:
        await until(lambda: len(received) >= 2 * RATE, 20)
        stopping = time.monotonic()
        await asyncio.to_thread(script, standalone, "stop")
        await asyncio.wait_for(down.wait(), 10)  # reported, although pulsar-client says nothing
        # Closing while the broker is down must not hang.
        t0 = time.monotonic()
        await bystander.close()
        await bystander_connector.close()
        close_seconds = time.monotonic() - t0
        assert close_seconds < 5, close_seconds
        await asyncio.to_thread(script, standalone, "start")
        healthy = time.monotonic()
        sent_when_healthy = len(futures)
        await until(lambda: max(received, default=-1) >= sent_when_healthy, 120)
        flowing = min(t for s, t in received.items() if s >= sent_when_healthy - 1)
        stop.set()
        await tasks[0]
        ids = await asyncio.wait_for(asyncio.gather(*futures), 300)  # every send succeeded
        await until(lambda: len(received) >= len(ids), 60)
        assert sorted(received) == list(range(len(ids)))  # nothing lost (a resend may duplicate)
        print(
            f"\nsent {len(ids)}; outage {healthy - stopping:.1f} s; first message after healthy "
            f"{flowing - healthy:.1f} s; close while down {close_seconds:.2f} s"
        )
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.close()
        await consumer.close()
        await connector.close()
