"""Frames inside a connection, read as Pulsar 4.0.7 reads them (Jackson into ProducerMessage /
ConsumerCommand): coercions, send-errors, the answer's exact keys, and the frames after which
Pulsar drops the connection (scripts/pulsar/FINDINGS.md, "Producer frames", "Consumer and
reader frames")."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.conformance.conftest import WS, Frame, Target, b64, recv, send, unique

pytestmark = pytest.mark.ws_only("WebSocket frames: the client-level behaviours are in test_client.py")

NULL_ID = 'Cannot invoke "String.getBytes(java.nio.charset.Charset)" because "src" is null'


async def close_of(ws: WS, timeout: float = 10.0) -> tuple[int, str]:
    """How the broker ended the connection: (1011, reason) or (1006, "") for no close frame."""
    msg = await ws.receive(timeout=timeout)
    if msg.type == aiohttp.WSMsgType.CLOSE:
        return int(msg.data), str(msg.extra or "")
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR), msg
    return int(ws.close_code or 1006), ""


async def answer(ws: WS, frame: Any) -> Frame:
    await (ws.send_str(frame) if isinstance(frame, str) else send(ws, frame))
    return await recv(ws)


async def test_producer_answers_carry_error_code_and_schema_version(target: Target) -> None:
    producer = await target.producer(unique("keys"))
    ok = await answer(producer, {"payload": b64("a"), "context": "c"})
    assert list(ok) == ["result", "messageId", "context", "errorCode", "schemaVersion"]
    assert (ok["result"], ok["errorCode"], ok["schemaVersion"]) == ("ok", 0, 0)
    no_context = await answer(producer, {"payload": b64("a")})
    assert list(no_context) == ["result", "messageId", "errorCode", "schemaVersion"]
    error = await answer(producer, {"payload": "%%%", "context": "e"})
    assert list(error) == ["result", "errorMsg", "context", "errorCode", "schemaVersion"]
    assert error["errorCode"] == 0  # 0 even on an error: the code is in `result`


CASES: list[tuple[str, Any, str]] = [
    # (name, frame, expected result); context "c" unless the frame has none
    ("key object", {"payload": b64("a"), "key": {"a": 1}, "context": "c"}, "send-error:3"),
    (
        "properties nested",
        {"payload": b64("a"), "properties": {"o": {"x": 1}}, "context": "c"},
        "send-error:3",
    ),
    ("properties list", {"payload": b64("a"), "properties": ["x"], "context": "c"}, "send-error:3"),
    ("properties string", {"payload": b64("a"), "properties": "x", "context": "c"}, "send-error:3"),
    ("context object", {"payload": b64("a"), "context": {"x": 1}}, "send-error:3"),
    ("deliverAt text", {"payload": b64("a"), "deliverAt": "abc", "context": "c"}, "send-error:3"),
    ("deliverAt bool", {"payload": b64("a"), "deliverAt": True, "context": "c"}, "send-error:3"),
    ("deliverAt numeric text", {"payload": b64("a"), "deliverAt": "1", "context": "c"}, "ok"),
    ("deliverAt null", {"payload": b64("a"), "deliverAt": None, "context": "c"}, "ok"),
    ("unknown field", {"payload": b64("a"), "bogus": 1, "context": "c"}, "ok"),
    ("sequenceId", {"payload": b64("a"), "sequenceId": 77, "context": "c"}, "ok"),
    ("replicationClusters", {"payload": b64("a"), "replicationClusters": ["nope"], "context": "c"}, "ok"),
    (
        "eventTime without offset",
        {"payload": b64("a"), "eventTime": "2026-01-02T03:04:05", "context": "c"},
        "send-error:7",
    ),
    (
        "eventTime +0200",
        {"payload": b64("a"), "eventTime": "2026-01-02T03:04:05+0200", "context": "c"},
        "send-error:7",
    ),
    ("eventTime garbage", {"payload": b64("a"), "eventTime": "yesterday", "context": "c"}, "send-error:7"),
    ("eventTime number", {"payload": b64("a"), "eventTime": 12345, "context": "c"}, "send-error:7"),
    ("eventTime no seconds", {"payload": b64("a"), "eventTime": "2026-01-02T03:04Z", "context": "c"}, "ok"),
    (
        "eventTime before 1970",
        {"payload": b64("a"), "eventTime": "1969-12-31T23:59:59Z", "context": "c"},
        "ok",
    ),
    ("payload missing", {"context": "c"}, "send-error:7"),
    ("payload url-safe", {"payload": "-_-_", "context": "c"}, "send-error:7"),
    ("payload with space", {"payload": "YWJj ZA", "context": "c"}, "send-error:7"),
    ("payload one char", {"payload": "Y", "context": "c"}, "send-error:7"),
    ("payload bad padding", {"payload": "YQ=", "context": "c"}, "send-error:7"),
    ("payload padding inside", {"payload": "YQ==YQ==", "context": "c"}, "send-error:7"),
    ("payload empty", {"payload": "", "context": "c"}, "ok"),
    ("not json", "not json", "send-error:3"),
    ("json array", "[1]", "send-error:3"),
    ("json string", '"x"', "send-error:3"),
    ("json null", "null", "send-error:7"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_producer_frame(target: Target, case: tuple[str, Any, str]) -> None:
    _, frame, expected = case
    producer = await target.producer(unique("pf"))
    got = await answer(producer, frame)
    assert got["result"] == expected, got
    # Jackson failures (send-error:3) and a null frame happen before the context is read.
    has_context = isinstance(frame, dict) and "context" in frame and expected != "send-error:3"
    assert ("context" in got) == has_context, got
    assert await answer(producer, {"payload": b64("next"), "context": "n"}) != {}  # still open


async def test_values_are_converted_as_jackson_converts_them(target: Target) -> None:
    topic = unique("coerce")
    consumer = await target.consumer(topic, "s")
    producer = await target.producer(topic)
    frames: list[Frame] = [
        {"payload": b64("a"), "key": 123, "context": 5},
        {"payload": b64("b"), "key": True, "properties": {"i": 1, "b": False, "f": 2.5, "s": "x"}},
        {"payload": b64("c"), "key": 1.5},
        {"payload": "YWI"},  # unpadded: accepted, delivered re-encoded
        {"payload": 1234},  # a number is its text, and "1234" is valid base64
        {"payload": b64("e"), "key": None, "eventTime": "1970-01-01T00:00:00Z"},
    ]
    answers = [await answer(producer, f) for f in frames]
    assert [a["result"] for a in answers] == ["ok"] * len(frames)
    assert answers[0]["context"] == "5"
    got = [await recv(consumer) for _ in frames]
    assert [g.get("key") for g in got] == ["123", "true", "1.5", None, None, None]
    assert got[1]["properties"] == {"i": "1", "b": "false", "f": "2.5", "s": "x"}
    assert [g["payload"] for g in got[3:5]] == ["YWI=", "1234"]
    assert "eventTime" not in got[5]  # an event time of 0 is not delivered


async def test_a_null_property_value_closes_the_producer_with_1011(target: Target) -> None:
    producer = await target.producer(unique("nullprop"))
    await send(producer, {"payload": b64("a"), "properties": {"n": None}, "context": "c"})
    assert await close_of(producer) == (1011, "Need Non-Null value for key: n")


async def test_a_frame_over_one_mib_closes_with_1009(target: Target) -> None:
    producer = await target.producer(unique("big"))
    await send(producer, {"payload": b64("fits"), "pad": "x" * (1024 * 1024 - 100)})
    assert (await recv(producer))["result"] == "ok"
    frame = json.dumps({"payload": "eHh4" * 300_000})  # 1,200,015 bytes
    await producer.send_str(frame)
    assert await close_of(producer) == (
        1009,
        f"Text message size [{len(frame)}] exceeds maximum size [1048576]",
    )


CONSUMER_DROPS: list[tuple[str, Any, int, str]] = [
    ("not json", "not json", 1006, ""),
    ("json array", "[1]", 1006, ""),
    ("ack without messageId", {"foo": 1}, 1011, NULL_ID),
    ("unknown type", {"type": "bogus"}, 1011, NULL_ID),
    ("nack without messageId", {"type": "negativeAcknowledge"}, 1011, NULL_ID),
    ("messageId not base64", {"messageId": "!!!"}, 1011, "Illegal base64 character 21"),
    (
        "messageId a number",
        {"messageId": 5},
        1011,
        "Input byte[] should at least have 2 bytes for base64 bytes",
    ),
    ("messageId not an id", {"messageId": "AAAA"}, 1006, ""),
    ("permit without count", {"type": "permit"}, 1006, ""),
]


@pytest.mark.parametrize("case", CONSUMER_DROPS, ids=[c[0] for c in CONSUMER_DROPS])
async def test_consumer_frames_that_drop_the_connection(
    target: Target, case: tuple[str, Any, int, str]
) -> None:
    _, frame, code, reason = case
    consumer = await target.consumer(unique("drop"), "s")
    await (consumer.send_str(frame) if isinstance(frame, str) else send(consumer, frame))
    assert await close_of(consumer) == (code, reason)


@pytest.mark.parametrize(
    "frame",
    [
        {"messageId": "CAEQ6AcwAA=="},  # a valid id of no message
        {"type": "bogus", "messageId": "CAEQ6AcwAA=="},  # an unknown type is an ack
        {"type": "permit", "permitMessages": 5},  # outside pull mode: ignored
        {"type": "permit", "permitMessages": "5"},
    ],
)
async def test_consumer_frames_that_are_ignored(target: Target, frame: Frame) -> None:
    consumer = await target.consumer(unique("ign"), "s")
    await send(consumer, frame)
    assert await answer(consumer, {"type": "isEndOfTopic"}) == {"endOfTopic": False}


async def test_reader_frames(target: Target) -> None:
    reader = await target.reader(unique("rf"))
    for frame in ({"messageId": "!!!"}, {"type": "bogus"}, {"type": "permit"}):
        await send(reader, frame)  # anything that is JSON counts as an ack
    assert await answer(reader, {"type": "isEndOfTopic"}) == {"endOfTopic": False}
    await reader.send_str("not json")
    assert await close_of(reader) == (1006, "")


async def test_unsubscribe_keeps_the_socket_open_and_delivers_nothing_more(target: Target) -> None:
    topic = unique("unsub")
    consumer = await target.consumer(topic, "s")
    await send(consumer, {"type": "unsubscribe"})
    assert await answer(consumer, {"type": "isEndOfTopic"}) == {"endOfTopic": False}
    async with target.session.get(target.admin_url(topic) + "/subscriptions") as response:
        assert await response.json() == []
    producer = await target.producer(topic)
    assert (await answer(producer, {"payload": b64("after")}))["result"] == "ok"
    assert await answer(consumer, {"type": "isEndOfTopic"}) == {"endOfTopic": False}  # not the message
    await send(consumer, {"type": "unsubscribe"})  # a second time: the consumer is closed
    assert await close_of(consumer) == (1006, "")


async def test_unsubscribe_while_others_are_attached_drops_the_connection(target: Target) -> None:
    topic = unique("unsub2")
    first = await target.consumer(topic, "s", subscriptionType="Shared")
    second = await target.consumer(topic, "s", subscriptionType="Shared")
    await send(first, {"type": "unsubscribe"})
    assert await close_of(first) == (1006, "")
    assert await answer(second, {"type": "isEndOfTopic"}) == {"endOfTopic": False}  # the other stays
