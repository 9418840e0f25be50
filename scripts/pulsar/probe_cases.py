"""Ask a broker (a real Pulsar, or the embedded one) what it answers, case by case.

Used to write the "WebSocket behaviours, case by case" part of scripts/pulsar/FINDINGS.md and
to compare the embedded broker with Pulsar before the conformance suite asserts them:

    .venv/bin/python scripts/pulsar/probe_cases.py http://127.0.0.1:8080 > pulsar.json
    .venv/bin/python scripts/pulsar/probe_cases.py http://127.0.0.1:PORT > embedded.json
    diff <(jq -S . pulsar.json) <(jq -S . embedded.json)

Each case prints one JSON object: the handshake status (101 or the refusal), the frames
received and, if the connection closed, its close code and reason. Fresh names every run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from typing import Any

import aiohttp

Obs = dict[str, Any]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Probe:
    def __init__(self, http: str, session: aiohttp.ClientSession) -> None:
        self.http = http.rstrip("/")
        self.ws = "ws" + self.http.removeprefix("http")
        self.session = session
        self.results: dict[str, Any] = {}

    def path(self, role: str, topic: str, sub: str | None = None, ns: str = "public/default") -> str:
        domain = "persistent"
        if topic.startswith("np:"):
            domain, topic = "non-persistent", topic[3:]
        p = f"/ws/v2/{role}/{domain}/{ns}/{topic}"
        return p + (f"/{sub}" if sub is not None else "")

    async def open(self, path: str, **params: str) -> tuple[int, aiohttp.ClientWebSocketResponse | None]:
        try:
            ws = await self.session.ws_connect(self.ws + path, params=params or None)
        except aiohttp.WSServerHandshakeError as e:
            return e.status, None
        return 101, ws

    async def status(self, path: str, **params: str) -> int:
        code, ws = await self.open(path, **params)
        if ws is not None:
            await ws.close()
        return code

    async def frames(self, ws: aiohttp.ClientWebSocketResponse, window: float = 1.0) -> Obs:
        """Frames received within `window` s, and the close if the connection closed."""
        got: list[Any] = []
        out: Obs = {"frames": got}
        while True:
            try:
                msg = await ws.receive(timeout=window)
            except TimeoutError:
                return out
            if msg.type == aiohttp.WSMsgType.TEXT:
                got.append(json.loads(msg.data))
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                out["closed"] = {"code": ws.close_code, "reason": msg.extra}
                return out
            out["other"] = str(msg.type)
            return out

    async def send(self, ws: aiohttp.ClientWebSocketResponse, frame: Any, window: float = 1.0) -> Obs:
        await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
        return await self.frames(ws, window)

    async def publish(self, topic: str, *texts: str, **extra: Any) -> list[str]:
        _, ws = await self.open(self.path("producer", topic))
        assert ws is not None
        ids = []
        for t in texts:
            await ws.send_str(json.dumps({"payload": b64(t), "context": t, **extra}))
            ids.append(json.loads((await ws.receive(timeout=10)).data)["messageId"])
        await ws.close()
        return ids

    def record(self, name: str, value: Any) -> None:
        self.results[name] = value
        print(json.dumps({name: value}), flush=True)

    async def admin(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.request(method, self.http + path, **kw) as r:
            return r.status, (await r.text())[:300]


async def handshakes(p: Probe) -> None:
    t = uniq("hs")
    prod = p.path("producer", t)
    cons = p.path("consumer", t, "s")
    read = p.path("reader", t)
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("producer compressionType=LZ4", prod, {"compressionType": "LZ4"}),
        ("producer compressionType=lz4", prod, {"compressionType": "lz4"}),
        ("producer compressionType=Bogus", prod, {"compressionType": "Bogus"}),
        ("producer messageRoutingMode=Bogus", prod, {"messageRoutingMode": "Bogus"}),
        ("producer messageRoutingMode=CustomPartition", prod, {"messageRoutingMode": "CustomPartition"}),
        ("producer hashingScheme=Bogus", prod, {"hashingScheme": "Bogus"}),
        ("producer hashingScheme=Murmur3_32Hash", prod, {"hashingScheme": "Murmur3_32Hash"}),
        ("producer sendTimeoutMillis=abc", prod, {"sendTimeoutMillis": "abc"}),
        ("producer sendTimeoutMillis=-1", prod, {"sendTimeoutMillis": "-1"}),
        ("producer initialSequenceId=abc", prod, {"initialSequenceId": "abc"}),
        ("producer batchingEnabled=yes", prod, {"batchingEnabled": "yes"}),
        (
            "producer batchingEnabled=true batchingMaxMessages=abc",
            prod,
            {"batchingEnabled": "true", "batchingMaxMessages": "abc"},
        ),
        ("producer maxPendingMessages=abc (batching off)", prod, {"maxPendingMessages": "abc"}),
        ("producer batchingMaxPublishDelay=abc (batching off)", prod, {"batchingMaxPublishDelay": "abc"}),
        ("producer encryptionKeys=k1", prod, {"encryptionKeys": "k1"}),
        ("producer sendTimeoutMillis=99999999999", prod, {"sendTimeoutMillis": "99999999999"}),
        ("consumer ackTimeoutMillis=100", cons, {"ackTimeoutMillis": "100"}),
        ("consumer ackTimeoutMillis=999", cons, {"ackTimeoutMillis": "999"}),
        ("consumer ackTimeoutMillis=1000", cons, {"ackTimeoutMillis": "1000"}),
        ("consumer ackTimeoutMillis=0", cons, {"ackTimeoutMillis": "0"}),
        ("consumer ackTimeoutMillis=-1", cons, {"ackTimeoutMillis": "-1"}),
        ("consumer ackTimeoutMillis=abc", cons, {"ackTimeoutMillis": "abc"}),
        ("consumer subscriptionMode=Bogus", cons, {"subscriptionMode": "Bogus"}),
        ("consumer subscriptionInitialPosition=Earliest", cons, {"subscriptionInitialPosition": "Earliest"}),
        ("consumer subscriptionInitialPosition=earliest", cons, {"subscriptionInitialPosition": "earliest"}),
        ("consumer receiverQueueSize=-1", cons, {"receiverQueueSize": "-1"}),
        ("consumer receiverQueueSize=0", cons, {"receiverQueueSize": "0"}),
        ("consumer receiverQueueSize=", cons, {"receiverQueueSize": ""}),
        ("consumer priorityLevel=-1", cons, {"priorityLevel": "-1"}),
        ("consumer priorityLevel=abc", cons, {"priorityLevel": "abc"}),
        ("consumer negativeAckRedeliveryDelay=-1", cons, {"negativeAckRedeliveryDelay": "-1"}),
        ("consumer negativeAckRedeliveryDelay=abc", cons, {"negativeAckRedeliveryDelay": "abc"}),
        ("consumer maxRedeliverCount=abc", cons, {"maxRedeliverCount": "abc"}),
        ("consumer maxRedeliverCount=0", cons, {"maxRedeliverCount": "0"}),
        ("consumer maxRedeliverCount=-1", cons, {"maxRedeliverCount": "-1"}),
        ("consumer deadLetterTopic=x (no count)", cons, {"deadLetterTopic": "x"}),
        ("consumer pullMode=yes", cons, {"pullMode": "yes"}),
        ("consumer cryptoFailureAction=Bogus", cons, {"cryptoFailureAction": "Bogus"}),
        ("consumer consumerName=", cons, {"consumerName": ""}),
        ("reader messageId=garbage!", read, {"messageId": "garbage!"}),
        ("reader messageId=AAAA", read, {"messageId": "AAAA"}),
        ("reader messageId=Earliest", read, {"messageId": "Earliest"}),
        ("reader receiverQueueSize=abc", read, {"receiverQueueSize": "abc"}),
        ("reader receiverQueueSize=-1", read, {"receiverQueueSize": "-1"}),
        ("reader cryptoFailureAction=Bogus", read, {"cryptoFailureAction": "Bogus"}),
        ("producer missing tenant", p.path("producer", t, ns="nosuchtenant/default"), {}),
        ("producer missing namespace", p.path("producer", t, ns="public/nosuchns"), {}),
        ("consumer missing tenant", p.path("consumer", t, "s", ns="nosuchtenant/default"), {}),
        ("consumer missing namespace", p.path("consumer", t, "s", ns="public/nosuchns"), {}),
        ("reader missing tenant", p.path("reader", t, ns="nosuchtenant/default"), {}),
        ("reader missing namespace", p.path("reader", t, ns="public/nosuchns"), {}),
        ("v1 producer path", f"/ws/producer/persistent/public/standalone/default/{t}", {}),
        ("bad domain", f"/ws/v2/producer/bogus/public/default/{t}", {}),
        ("producer topic with slash", f"/ws/v2/producer/persistent/public/default/{t}/x", {}),
        ("reader extra segment", f"/ws/v2/reader/persistent/public/default/{t}/x", {}),
        ("v3 no topics", "/ws/v3/consumer/s", {}),
        ("v3 topics and pattern", "/ws/v3/consumer/s", {"topics": t, "topicsPattern": "x.*"}),
        ("v3 topics=a,b", "/ws/v3/consumer/s", {"topics": f"persistent://public/default/{t},{t}-2"}),
        ("v3 topicsPattern", "/ws/v3/consumer/s", {"topicsPattern": "persistent://public/default/hs-.*"}),
        ("v3 empty sub", "/ws/v3/consumer/", {"topics": t}),
        ("v3 producer", f"/ws/v3/producer/persistent/public/default/{t}", {}),
        ("bad tenant chars", f"/ws/v2/producer/persistent/bad%20tenant/default/{t}", {}),
        ("topic name with colon", p.path("producer", t + ":x"), {}),
    ]
    for name, path, params in cases:
        p.record(name, await p.status(path, **params))


async def producer_frames(p: Probe) -> None:
    t = uniq("pf")
    _, cons = await p.open(p.path("consumer", t, "s"), subscriptionType="Shared")
    _, prod = await p.open(p.path("producer", t))
    assert prod is not None and cons is not None
    frames: list[tuple[str, Any]] = [
        ("key int", {"payload": b64("a"), "key": 123, "context": "c1"}),
        ("key bool", {"payload": b64("a"), "key": True, "context": "c2"}),
        ("key float", {"payload": b64("a"), "key": 1.5, "context": "c3"}),
        ("key object", {"payload": b64("a"), "key": {"a": 1}, "context": "c4"}),
        ("key null", {"payload": b64("a"), "key": None, "context": "c5"}),
        (
            "properties mixed",
            {"payload": b64("a"), "properties": {"i": 1, "b": False, "f": 2.5, "s": "x"}, "context": "c6"},
        ),
        ("properties null value", {"payload": b64("a"), "properties": {"n": None}, "context": "c7"}),
        ("properties nested", {"payload": b64("a"), "properties": {"o": {"x": 1}}, "context": "c8"}),
        ("properties list", {"payload": b64("a"), "properties": ["x"], "context": "c9"}),
        ("context int", {"payload": b64("a"), "context": 5}),
        ("context object", {"payload": b64("a"), "context": {"x": 1}}),
        ("eventTime ok", {"payload": b64("a"), "eventTime": "2026-01-02T03:04:05.678Z", "context": "e1"}),
        (
            "eventTime offset",
            {"payload": b64("a"), "eventTime": "2026-01-02T05:04:05+02:00", "context": "e2"},
        ),
        (
            "eventTime micro",
            {"payload": b64("a"), "eventTime": "2026-01-02T03:04:05.123456Z", "context": "e3"},
        ),
        ("eventTime no zone", {"payload": b64("a"), "eventTime": "2026-01-02T03:04:05", "context": "e4"}),
        ("eventTime garbage", {"payload": b64("a"), "eventTime": "yesterday", "context": "e5"}),
        ("eventTime int", {"payload": b64("a"), "eventTime": 12345, "context": "e6"}),
        ("eventTime epoch", {"payload": b64("a"), "eventTime": "1970-01-01T00:00:00Z", "context": "e7"}),
        ("payload int", {"payload": 1234, "context": "p1"}),
        ("payload empty", {"payload": "", "context": "p2"}),
        ("payload url-safe b64", {"payload": "-_-_", "context": "p3"}),
        ("payload unpadded b64", {"payload": "YWJj ZA", "context": "p4"}),
        ("payload unpadded2", {"payload": "YWI", "context": "p5"}),
        ("deliverAt string", {"payload": b64("a"), "deliverAt": "abc", "context": "d1"}),
        ("deliverAt numeric string", {"payload": b64("a"), "deliverAt": "1", "context": "d2"}),
        ("unknown field", {"payload": b64("a"), "bogus": 1, "context": "u1"}),
        ("sequenceId", {"payload": b64("a"), "sequenceId": 77, "context": "s1"}),
        (
            "replicationClusters",
            {"payload": b64("a"), "replicationClusters": ["standalone"], "context": "r1"},
        ),
        (
            "replicationClusters bogus",
            {"payload": b64("a"), "replicationClusters": ["nope"], "context": "r2"},
        ),
        ("not json", "not json"),
        ("json array", "[1]"),
        ("json string", '"x"'),
        ("json null", "null"),
    ]
    for name, frame in frames:
        obs = await p.send(prod, frame, 0.5)
        p.record(f"producer frame: {name}", obs)
        if "closed" in obs:  # the frame killed the connection: the next case gets a new one
            _, prod = await p.open(p.path("producer", t))
            assert prod is not None
    p.record("producer frames: consumer saw", await p.frames(cons, 1.0))
    await prod.close()
    await cons.close()


async def consumer_frames(p: Probe) -> None:
    cases: list[tuple[str, Any]] = [
        ("not json", "not json"),
        ("ack without messageId", {"foo": 1}),
        ("ack messageId null", {"messageId": None}),
        ("ack bad base64", {"messageId": "!!!"}),
        ("ack undecodable id", {"messageId": "AAAA"}),
        ("ack unknown but valid id", {"messageId": "CAEQAQ=="}),
        ("unknown type", {"type": "bogus"}),
        ("unknown type with id", {"type": "bogus", "messageId": "CAEQAQ=="}),
        ("permit without count", {"type": "permit"}),
        ("permit with count not pull", {"type": "permit", "permitMessages": 5}),
        ("permit count string", {"type": "permit", "permitMessages": "5"}),
        ("permit count -1", {"type": "permit", "permitMessages": -1}),
        ("nack without id", {"type": "negativeAcknowledge"}),
        ("json array", "[1]"),
        ("isEndOfTopic", {"type": "isEndOfTopic"}),
        ("messageId int", {"messageId": 5}),
    ]
    await _frame_cases(p, "consumer", "cf", cases, sub="s")
    await _frame_cases(
        p,
        "reader",
        "rf",
        [
            ("not json", "nope"),
            ("ack garbage", {"messageId": "!!!"}),
            ("unknown type", {"type": "x"}),
            ("permit", {"type": "permit"}),
        ],
    )


async def _frame_cases(
    p: Probe, kind: str, prefix: str, cases: list[tuple[str, Any]], sub: str | None = None
) -> None:
    """Each frame on a connection of its own to a new topic; then, if it is still open, isEndOfTopic."""
    for name, frame in cases:
        t = uniq(prefix)
        _, ws = await p.open(p.path(kind, t, sub))
        assert ws is not None
        obs = await p.send(ws, frame, 1.0)
        if "closed" not in obs:
            obs["after"] = await p.send(ws, {"type": "isEndOfTopic"}, 1.0)
        p.record(f"{kind} frame: {name}", obs)
        await ws.close()


async def unsubscribe_cases(p: Probe) -> None:
    t = uniq("un")
    _, a = await p.open(p.path("consumer", t, "s"), subscriptionType="Shared")
    _, b = await p.open(p.path("consumer", t, "s"), subscriptionType="Shared")
    assert a is not None and b is not None
    p.record("unsubscribe with another consumer", await p.send(a, {"type": "unsubscribe"}, 1.5))
    p.record("unsubscribe with another consumer: the other", await p.frames(b, 0.3))
    await a.close()
    await b.close()
    t = uniq("un")
    _, a = await p.open(p.path("consumer", t, "s"))
    assert a is not None
    p.record("unsubscribe alone", await p.send(a, {"type": "unsubscribe"}, 1.0))
    await p.publish(t, "after")
    p.record("unsubscribe alone: publish after", await p.frames(a, 1.0))
    p.record(
        "unsubscribe alone: subscriptions",
        await p.admin("GET", f"/admin/v2/persistent/public/default/{t}/subscriptions"),
    )
    p.record("unsubscribe alone: eot", await p.send(a, {"type": "isEndOfTopic"}, 1.0))
    p.record("unsubscribe alone: second unsubscribe", await p.send(a, {"type": "unsubscribe"}, 1.0))
    await a.close()


async def semantics(p: Probe) -> None:
    # Earliest
    t = uniq("ea")
    await p.publish(t, "before1", "before2")
    _, c = await p.open(p.path("consumer", t, "s"), subscriptionInitialPosition="Earliest")
    assert c is not None
    obs = await p.frames(c, 1.5)
    p.record("earliest: texts", [base64.b64decode(f["payload"]).decode() for f in obs["frames"]])
    p.record("earliest: first frame", obs["frames"][:1])
    await c.close()
    # deliverAfterMs / deliverAt on each type
    for type_ in ("Exclusive", "Failover", "Shared", "Key_Shared"):
        t = uniq("dl")
        _, c = await p.open(p.path("consumer", t, "s"), subscriptionType=type_)
        assert c is not None
        _, prod = await p.open(p.path("producer", t))
        assert prod is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await prod.send_str(json.dumps({"payload": b64("late"), "deliverAfterMs": 1500, "context": "x"}))
        ans = json.loads((await prod.receive(timeout=5)).data)
        msg = await c.receive(timeout=5)
        p.record(
            f"deliverAfterMs=1500 on {type_}",
            {
                "ack": sorted(ans),
                "after_s": round(loop.time() - t0, 1),
                "got": msg.type == aiohttp.WSMsgType.TEXT,
            },
        )
        await prod.close()
        await c.close()
    # eventTime round trip + publishTime format
    t = uniq("et")
    _, c = await p.open(p.path("consumer", t, "s"))
    assert c is not None
    await p.publish(t, "e", eventTime="2026-01-02T03:04:05.678Z", key="k")
    p.record("eventTime round trip frame keys", (await p.frames(c, 1.0))["frames"])
    await c.close()
    # DLQ
    for type_ in ("Shared", "Exclusive"):
        t = uniq("dlq")
        _, c = await p.open(
            p.path("consumer", t, "s"),
            subscriptionType=type_,
            maxRedeliverCount="1",
            negativeAckRedeliveryDelay="100",
        )
        assert c is not None
        dlq = f"{t}-s-DLQ"
        _, dr = await p.open(p.path("consumer", dlq, "dsub"))
        await p.publish(t, "poison")
        seen = []
        for _ in range(4):
            obs = await p.frames(c, 1.5)
            if not obs["frames"]:
                break
            for f in obs["frames"]:
                seen.append(f["redeliveryCount"])
                await c.send_str(json.dumps({"type": "negativeAcknowledge", "messageId": f["messageId"]}))
        p.record(f"dlq {type_}: redeliveryCounts seen", seen)
        if dr is not None:
            p.record(f"dlq {type_}: dlq consumer got", (await p.frames(dr, 2.0))["frames"])
            await dr.close()
        p.record(f"dlq {type_}: topics", await p.admin("GET", "/admin/v2/persistent/public/default"))
        await c.close()
    # terminate
    t = uniq("term")
    _, c = await p.open(p.path("consumer", t, "s"))
    _, prod = await p.open(p.path("producer", t))
    assert prod is not None and c is not None
    await prod.send_str(json.dumps({"payload": b64("x"), "context": "1"}))
    await prod.receive(timeout=5)
    p.record("terminate", await p.admin("POST", f"/admin/v2/persistent/public/default/{t}/terminate"))
    p.record("terminate: open producer sends", await p.send(prod, {"payload": b64("y"), "context": "2"}, 1.0))
    p.record("terminate: new producer", await p.status(p.path("producer", t)))
    obs = await p.frames(c, 1.0)
    p.record("terminate: consumer frames", len(obs["frames"]))
    for f in obs["frames"]:
        await c.send_str(json.dumps({"messageId": f["messageId"]}))
    p.record("terminate: consumer eot", await p.send(c, {"type": "isEndOfTopic"}, 1.0))
    _, r = await p.open(p.path("reader", t), messageId="earliest")
    assert r is not None
    p.record("terminate: reader", await p.frames(r, 1.0))
    p.record("terminate: reader eot", await p.send(r, {"type": "isEndOfTopic"}, 1.0))
    p.record("terminate again", await p.admin("POST", f"/admin/v2/persistent/public/default/{t}/terminate"))
    p.record(
        "terminate missing topic",
        await p.admin("POST", f"/admin/v2/persistent/public/default/{uniq('no')}/terminate"),
    )
    await r.close()
    await c.close()
    # non-persistent
    t = uniq("np")
    await p.publish("np:" + t, "lost")
    _, c = await p.open(p.path("consumer", "np:" + t, "s"), subscriptionInitialPosition="Earliest")
    _, prod = await p.open(p.path("producer", "np:" + t))
    assert prod is not None and c is not None
    p.record("non-persistent publish", await p.send(prod, {"payload": b64("np"), "context": "n"}, 1.0))
    p.record("non-persistent consumer", await p.frames(c, 1.0))
    _, r = await p.open(p.path("reader", "np:" + t), messageId="earliest")
    p.record("non-persistent reader earliest", (await p.frames(r, 1.0)) if r else "refused")
    p.record(
        "non-persistent stats", await p.admin("GET", f"/admin/v2/non-persistent/public/default/{t}/stats")
    )
    await prod.close()
    await c.close()
    # frame size
    t = uniq("big")
    _, prod = await p.open(p.path("producer", t))
    assert prod is not None
    big = b64("x" * (1024 * 1024))
    p.record("frame over 1 MiB", await p.send(prod, {"payload": big}, 2.0))
    _, prod = await p.open(p.path("producer", t))
    assert prod is not None
    fits = "x" * (1024 * 1024 - 200)
    p.record(
        "frame just under 1 MiB",
        await p.send(prod, json.dumps({"payload": "", "pad": fits})[: 1024 * 1024], 2.0),
    )
    await prod.close()


async def main() -> None:
    async with aiohttp.ClientSession() as session:
        p = Probe(sys.argv[1], session)
        only = set(sys.argv[2:])
        for step in (handshakes, producer_frames, consumer_frames, unsubscribe_cases, semantics):
            if not only or step.__name__ in only:
                try:
                    await step(p)
                except Exception as error:  # keep going: a probe documents, it does not assert
                    p.record(f"{step.__name__} crashed", repr(error))


if __name__ == "__main__":
    asyncio.run(main())
