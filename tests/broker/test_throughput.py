"""A non-timed load check: many publishes in flight, one consumer, nothing lost or reordered.

The rate is printed (pytest -s) for a rough look, never asserted: CI machines vary. The real
measurement is the benchmark suite.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.broker.conftest import Client, b64

COUNT = 5000


async def test_pipelined_publishes_are_all_delivered_in_order(client: Client) -> None:
    consumer = await client.consumer()
    producer = await client.producer()
    payload = b64(b"x" * 100)
    started = time.perf_counter()

    async def produce() -> None:
        for i in range(COUNT):
            await producer.send_str(orjson.dumps({"payload": payload, "context": str(i)}).decode())

    async def answers() -> list[str]:
        contexts = []
        for _ in range(COUNT):
            answer = orjson.loads((await producer.receive(timeout=10)).data)
            assert answer["result"] == "ok"
            contexts.append(answer["context"])
        return contexts

    async def consume() -> list[str]:
        ids = []
        for _ in range(COUNT):
            frame = orjson.loads((await consumer.receive(timeout=10)).data)
            ids.append(frame["messageId"])
            await consumer.send_str(orjson.dumps({"messageId": frame["messageId"]}).decode())
        return ids

    _, contexts, ids = await asyncio.gather(produce(), answers(), consume())
    elapsed = time.perf_counter() - started
    assert contexts == [str(i) for i in range(COUNT)]
    assert len(set(ids)) == COUNT
    print(f"\n{COUNT} messages published and consumed in {elapsed:.2f}s ({COUNT / elapsed:,.0f} msg/s)")
