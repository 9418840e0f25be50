"""Probe the WebSocket API of a running Pulsar standalone and print what it answers.

Used to write scripts/pulsar/FINDINGS.md.  Start Pulsar first
(scripts/pulsar-standalone start), then:

    .venv/bin/python scripts/pulsar/probe_ws.py [--port 8080]

Needs websocket-client and aiohttp.  Uses fresh topic names per run, so it
can be run repeatedly against the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import time
import uuid

import aiohttp
import websocket

HOST = "127.0.0.1"


def raw_upgrade(port: int, path: str, timeout: float = 10.0) -> dict:
    """Send a WebSocket upgrade request by hand and return the exact answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        code = int(status.split()[1]) if len(status.split()) > 1 else 0
        if code != 101:
            n = int(headers.get("content-length", "-1"))
            deadline = time.monotonic() + timeout
            while (n < 0 or len(body) < n) and time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                body += chunk
        return {
            "status_line": status,
            "headers": headers,
            "body": body.decode("utf-8", "replace") if code != 101 else "",
        }


def show(title: str, obj) -> None:
    print(f"\n### {title}")
    print(json.dumps(obj, indent=2, ensure_ascii=False) if not isinstance(obj, str) else obj)


def publish(producer: websocket.WebSocket, prefix: str, numbers: range) -> None:
    """One message `<prefix><n>` (context n) per number, each answer awaited."""
    for i in numbers:
        producer.send(json.dumps({"payload": b64(f"{prefix}{i}"), "context": str(i)}))
        producer.recv()


def take_all(conn: websocket.WebSocket, timeout: float) -> list[str]:
    """The texts that arrive until `timeout` passes without one, each acknowledged."""
    got = []
    while (m := recv_json(conn, timeout)) is not None:
        got.append(base64.b64decode(m["payload"]).decode())
        conn.send(json.dumps({"messageId": m["messageId"]}))
    return got


def ws(port: int, path: str, timeout: float = 10.0) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://{HOST}:{port}{path}", timeout=timeout)


def recv_json(conn: websocket.WebSocket, timeout: float) -> dict | None:
    conn.settimeout(timeout)
    try:
        return json.loads(conn.recv())
    except websocket.WebSocketTimeoutException:
        return None


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=int(os.environ.get("PULSAR_WEB_PORT", "8080")))
    port = ap.parse_args().port
    run = uuid.uuid4().hex[:6]
    ns = "persistent/public/default"
    t1 = f"t1-{run}"
    prod_path = f"/ws/v2/producer/{ns}/{t1}"
    cons_path = f"/ws/v2/consumer/{ns}/{t1}/sub1"

    # 1. producer round trip
    p = ws(port, prod_path)
    t0 = time.monotonic()
    p.send(json.dumps({"payload": "aGVsbG8=", "context": "1"}))
    show(
        "producer: send {payload: aGVsbG8=, context: 1} -> answer",
        {"frame": json.loads(p.recv()), "ms": round((time.monotonic() - t0) * 1000, 1)},
    )

    # 2. first consumer (Exclusive by default); subscription is created now
    c1 = ws(port, cons_path)
    show(
        "consumer 1 on sub1: message sent before the subscription existed",
        {"received_within_2s": recv_json(c1, 2.0)},
    )
    p.send(json.dumps({"payload": b64("second"), "context": "2", "properties": {"k": "v"}, "key": "key-a"}))
    show("producer: answer to 2nd send (with properties and key)", json.loads(p.recv()))
    msg = recv_json(c1, 10.0)
    show("consumer 1: message frame", msg)
    c1.send(json.dumps({"messageId": msg["messageId"]}))
    show("consumer 1: answer to an ack frame (within 2 s)", {"frame": recv_json(c1, 2.0)})

    # 3. second consumer on the same Exclusive subscription
    show("second consumer on sub1 (Exclusive), raw HTTP answer", raw_upgrade(port, cons_path))
    try:
        ws(port, cons_path).close()
        show("websocket-client, second consumer", "connected (unexpected)")
    except websocket.WebSocketBadStatusException as e:
        show(
            "websocket-client, second consumer: WebSocketBadStatusException",
            {
                "status_code": e.status_code,
                "str": str(e),
                "resp_body": e.resp_body.decode() if isinstance(e.resp_body, bytes) else e.resp_body,
            },
        )

    async def aio_second() -> dict:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(f"ws://{HOST}:{port}{cons_path}"):
                    return {"connected": True}
            except aiohttp.WSServerHandshakeError as e:
                return {"type": type(e).__name__, "status": e.status, "message": e.message, "str": str(e)}

    show("aiohttp, second consumer", asyncio.run(aio_second()))

    # 3b. immediate reconnect after the exclusive consumer leaves
    c1.close()
    attempts = []
    t0 = time.monotonic()
    for _ in range(20):
        r = raw_upgrade(port, cons_path)
        attempts.append((round((time.monotonic() - t0) * 1000), r["status_line"]))
        if r["status_line"].split()[1] == "101":
            break
        time.sleep(0.1)
    show("reconnect to sub1 right after consumer 1 closed: (ms, status) per attempt", attempts)

    # 4. bad subscriptionType, other bad parameters and paths: each one's raw HTTP answer
    for title, path in [
        ("subscriptionType=Bogus", f"/ws/v2/consumer/{ns}/{t1}/sub-bogus?subscriptionType=Bogus"),
        ("subscriptionType=shared (lower case)", f"/ws/v2/consumer/{ns}/{t1}/sub-lc?subscriptionType=shared"),
        ("receiverQueueSize=abc", f"/ws/v2/consumer/{ns}/{t1}/sub-rq?receiverQueueSize=abc"),
        ("consumer with empty subscription (trailing slash)", f"/ws/v2/consumer/{ns}/{t1}/"),
        ("consumer without subscription segment", f"/ws/v2/consumer/{ns}/{t1}"),
        ("double slash //ws/v2/producer/...", f"/{prod_path}"),
        ("unknown tenant/namespace producer", f"/ws/v2/producer/persistent/nosuchtenant/nons/{t1}"),
    ]:
        show(f"{title}, raw HTTP answer", raw_upgrade(port, path))
    show("plain HTTP GET (no upgrade) on the producer path", {"curl_like": _plain_get(port, prod_path)})

    # 5. bad producer frames
    for title, frame in [
        ("non-JSON text frame", "this is not json"),
        ("JSON without payload", json.dumps({"context": "np"})),
        ("payload not base64", json.dumps({"payload": "%%%not base64%%%", "context": "b64"})),
        ("JSON array", json.dumps([1, 2])),
    ]:
        p.send(frame)
        show(f"producer: {title} {frame!r} -> answer", {"frame": recv_json(p, 5.0)})
    p.send(json.dumps({"payload": b64("after errors"), "context": "3"}))
    show("producer: still usable after the bad frames?", {"frame": recv_json(p, 5.0)})
    p.close()

    # 6. Failover with two consumers
    t2 = f"t2-{run}"
    fo = f"/ws/v2/consumer/{ns}/{t2}/fo1?subscriptionType=Failover"
    a = ws(port, fo + "&consumerName=a")
    b = ws(port, fo + "&consumerName=b")
    time.sleep(1.5)  # activeConsumerFailoverDelayTimeMillis = 1000
    pr = ws(port, f"/ws/v2/producer/{ns}/{t2}")
    publish(pr, "m", range(10))
    got = {"a": take_all(a, 2.0), "b": take_all(b, 2.0)}
    show("Failover: 10 messages, consumers a and b (names a, b), who got what", got)
    active = a if got["a"] else b
    other_name = "b" if got["a"] else "a"
    other = b if got["a"] else a
    active.close()
    time.sleep(1.5)
    publish(pr, "m", range(10, 13))
    took = take_all(other, 3.0)
    show(f"Failover: after the active consumer closed, consumer {other_name} got", took)
    other.close()

    # 7. Shared with two consumers
    t3 = f"t3-{run}"
    sh = f"/ws/v2/consumer/{ns}/{t3}/sh1?subscriptionType=Shared"
    s1, s2 = ws(port, sh), ws(port, sh)
    prs = ws(port, f"/ws/v2/producer/{ns}/{t3}")
    publish(prs, "s", range(10))
    got = {"s1": take_all(s1, 2.0), "s2": take_all(s2, 2.0)}
    show("Shared: 10 messages over two consumers", got)
    for c in (s1, s2, prs, pr):
        c.close()

    # 8. isEndOfTopic and unsubscribe frames, negative ack
    t4 = f"t4-{run}"
    c = ws(port, f"/ws/v2/consumer/{ns}/{t4}/s4?negativeAckRedeliveryDelay=100")
    pp = ws(port, f"/ws/v2/producer/{ns}/{t4}")
    pp.send(json.dumps({"payload": b64("nack me"), "context": "n"}))
    pp.recv()
    m1 = recv_json(c, 5.0)
    c.send(json.dumps({"type": "negativeAcknowledge", "messageId": m1["messageId"]}))
    m2 = recv_json(c, 5.0)
    show(
        "negativeAcknowledge then redelivery (negativeAckRedeliveryDelay=100)",
        {"first": m1, "redelivered": m2},
    )
    c.send(json.dumps({"messageId": m2["messageId"]}))
    c.send(json.dumps({"type": "isEndOfTopic"}))
    show("consumer: {type: isEndOfTopic} -> answer", {"frame": recv_json(c, 5.0)})
    c.send(json.dumps({"type": "unsubscribe"}))
    show("consumer: {type: unsubscribe} -> answer / close", {"frame": _recv_or_close(c)})
    pp.close()

    # 9. reader
    r = ws(port, f"/ws/v2/reader/{ns}/{t1}?messageId=earliest")
    first = recv_json(r, 5.0)
    show("reader from earliest on t1: first frame", first)
    r.close()


def _plain_get(port: int, path: str) -> dict:
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return {"status_line": head.split(b"\r\n")[0].decode(), "body": body.decode("utf-8", "replace")[:300]}


def _recv_or_close(conn: websocket.WebSocket):
    conn.settimeout(5.0)
    try:
        op, data = conn.recv_data(control_frame=True)
        if op == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return {"close_code": code, "reason": data[2:].decode("utf-8", "replace")}
        return data.decode("utf-8", "replace")
    except websocket.WebSocketTimeoutException:
        return None
    except websocket.WebSocketConnectionClosedException:
        return "connection closed"


if __name__ == "__main__":
    main()
