"""Readers: from the earliest message, from the latest (only what comes next), and from a
message id (the messages after it: Pulsar excludes the start id itself)."""

from __future__ import annotations

from streampair.consumer import Reader

from tests.conformance.conftest import Target, nothing_within, publish, recv, recv_n, texts_of, unique


async def _read(reader: Reader, count: int) -> list[str]:
    out = []
    async for message in reader:
        out.append(message.text())
        if len(out) == count:
            break
    return out


async def test_reader_from_earliest_sees_what_was_published_before_it(target: Target) -> None:
    topic = unique("rd")
    producer = await target.producer(topic)
    await publish(producer, ["e0", "e1", "e2"])
    connector = target.connector(topic)
    reader = Reader(connector, "earliest")
    try:
        assert await _read(reader, 3) == ["e0", "e1", "e2"]
        await publish(producer, ["e3"])
        assert await _read(reader, 1) == ["e3"]
    finally:
        await reader.close()
        await connector.close()
    raw = await target.reader(topic, messageId="earliest")
    assert texts_of(await recv_n(raw, 4)) == ["e0", "e1", "e2", "e3"]
    await raw.close()
    await producer.close()


async def test_reader_from_latest_sees_only_what_comes_after_it(target: Target) -> None:
    topic = unique("rl")
    producer = await target.producer(topic)
    await publish(producer, ["old0", "old1"])
    connector = target.connector(topic)
    reader = Reader(connector, "latest")
    raw = await target.reader(topic)  # latest is the default
    try:
        await reader.connect()  # connected before the new message is published
        await publish(producer, ["new0"])
        assert await _read(reader, 1) == ["new0"]
        assert texts_of([await recv(raw)]) == ["new0"]
        await nothing_within(raw, 0.2)
    finally:
        await reader.close()
        await connector.close()
        await raw.close()
    await producer.close()


async def test_reader_from_a_message_id_starts_after_that_message(target: Target) -> None:
    topic = unique("rid")
    producer = await target.producer(topic)
    ids = await publish(producer, ["i0", "i1", "i2", "i3"])
    raw = await target.reader(topic, messageId=ids[1])
    frames = await recv_n(raw, 2)
    assert texts_of(frames) == ["i2", "i3"]
    assert [f["messageId"] for f in frames] == ids[2:]
    await nothing_within(raw, 0.2)
    await raw.close()
    connector = target.connector(topic)
    reader = Reader(connector, ids[0])
    try:
        assert await _read(reader, 3) == ["i1", "i2", "i3"]
    finally:
        await reader.close()
        await connector.close()
    await producer.close()
