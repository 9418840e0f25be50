"""StandbyLoop and Publisher in-process against the embedded broker (no subprocesses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from broker.testing import running_broker
from consumer.app import ConsumerService
from consumer.settings import ConsumerSettings
from consumer.standby import EXIT_BUSY
from producer.publisher import Publisher
from streampair import Connector, Producer
from streampair.runtime import ServiceExit

from harness import until


@pytest.fixture
async def ws(tmp_path: Path) -> AsyncIterator[str]:
    async with running_broker(tmp_path / "data") as url:
        yield url.replace("http://", "ws://")


def service(ws: str, name: str, **kw: object) -> ConsumerService:
    settings = ConsumerSettings(
        stream_url=ws,
        consumer_name=name,
        standby_retry_seconds=0.05,
        reconnect_max_seconds=0.2,
        log_payloads=False,
        **kw,  # type: ignore[arg-type]
    )
    return ConsumerService(settings)


async def test_one_holds_the_subscription_the_other_waits_then_takes_over(ws: str) -> None:
    first, second = service(ws, "c1"), service(ws, "c2")
    stop1, stop2 = asyncio.Event(), asyncio.Event()
    run1 = asyncio.create_task(first.loop.run(stop1))
    assert await until(lambda: first.status.role == "active", 10)
    run2 = asyncio.create_task(second.loop.run(stop2))
    assert await until(lambda: second.status.role == "standby", 10)
    assert second.status.ready and second.loop.rejections >= 1  # a standby is Ready
    assert "409" in str(second.status.last_error)

    connector = Connector(first.settings.client_config())
    async with Producer(connector) as producer:
        await producer.send("before", {"producer_id": "p", "seq": "1"})
        assert await until(lambda: first.handler.received == 1, 10)
        stop1.set()  # the active one leaves
        await run1
        assert first.status.role == "connecting" and not first.status.connected
        assert await until(lambda: second.status.role == "active", 10)  # took over
        await producer.send("after", {"producer_id": "p", "seq": "2"})
    await connector.close()
    assert await until(lambda: second.handler.received == 1, 10)
    assert second.handler.tracker.gaps == 0
    stop2.set()
    await run2
    await first.connector.close()
    await second.connector.close()


async def test_on_busy_exit_ends_with_status_3(ws: str) -> None:
    holder = service(ws, "c1")
    stop = asyncio.Event()
    held = asyncio.create_task(holder.loop.run(stop))
    assert await until(lambda: holder.status.role == "active", 10)
    refused = service(ws, "c2", on_busy="exit")
    with pytest.raises(ServiceExit) as info:
        await refused.loop.run(asyncio.Event())
    assert info.value.code == EXIT_BUSY and refused.loop.rejections == 1
    stop.set()
    await held
    await holder.connector.close()
    await refused.connector.close()


async def test_a_message_the_handler_cannot_take_is_dead_lettered_and_the_loop_goes_on(ws: str) -> None:
    svc = service(ws, "c1", fail_on_property="poison", max_delivery_attempts=2, retry_delay_seconds=0.01)
    stop = asyncio.Event()
    run = asyncio.create_task(svc.loop.run(stop))
    assert await until(lambda: svc.status.role == "active", 10)
    connector = Connector(svc.settings.client_config())
    async with Producer(connector) as producer:
        await producer.send("bad", {"poison": "1"})
        await producer.send("good", {"producer_id": "p", "seq": "1"})
    await connector.close()
    assert await until(lambda: svc.processor.dead_lettered == 1 and svc.handler.tracker.producers == 1, 10)
    assert svc.processor.handler_errors == 2 and svc.status.role == "active"
    stop.set()
    await run
    await svc.connector.close()


async def test_publisher_numbers_messages_and_drains_on_stop(ws: str) -> None:
    connector = Connector(ConsumerSettings(stream_url=ws).client_config())
    producer = Producer(connector)
    publisher = Publisher(producer, "p-1", interval=0.01)
    stop = asyncio.Event()
    await producer.start()
    run = asyncio.create_task(publisher.run(stop, drain_seconds=2))
    assert await until(lambda: publisher.published >= 5, 10)
    stop.set()
    await run
    await producer.close()
    await connector.close()
    assert publisher.failed == 0 and publisher.unconfirmed == 0
    assert publisher.published == publisher.seq  # every number taken was answered
    text, props = publisher.message(7)
    assert props["producer_id"] == "p-1" and props["seq"] == "7" and props["sent_at"].isdigit()
    assert "Hello from p-1" in text


async def test_publisher_takes_no_number_while_disconnected(ws: str) -> None:
    connector = Connector(
        ConsumerSettings(stream_url="ws://127.0.0.1:9", reconnect_max_seconds=0.1).client_config()
    )
    producer = Producer(connector)
    publisher = Publisher(producer, "p-1", interval=0.01)
    stop = asyncio.Event()
    await producer.start()
    run = asyncio.create_task(publisher.run(stop, drain_seconds=0.1))
    await asyncio.sleep(0.3)  # no event exists for "nothing happened": a short, bounded look
    stop.set()
    await run
    await producer.close()
    await connector.close()
    assert publisher.seq == 0 and publisher.failed == 0
