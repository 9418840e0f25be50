"""The hostile HTTP clients of `hostile_http` (bench/chaos_hostile.py): what they send, what came back.

Raw sockets where aiohttp's client would not misbehave enough (slowloris heads, half bodies,
over-long lines, broken Content-Lengths), aiohttp for the rest, and one legitimate caller in a
process of its own, timed while the flood is answered.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from streampair.webserver import BODY_TIMEOUT_SECONDS, HEAD_TIMEOUT_SECONDS

from bench.chaos_common import QUICK

#: POST /messages client errors in services/producer/openapi.yaml.
DOCUMENTED = {400, 405, 408, 413, 415, 422}
FLOOD = 200 if QUICK else 1_000
FORGED_PRODUCERS = 70
DEADLINE_SLACK_S = 3.0  # a deadline answer may come this much after HEAD/BODY_TIMEOUT_SECONDS
#: The latest any answer may come: the head or body deadline, and the slack.
DEADLINE_S = max(HEAD_TIMEOUT_SECONDS, BODY_TIMEOUT_SECONDS) + DEADLINE_SLACK_S
MIB = 1024 * 1024


@dataclass
class Exchange:
    """One hostile request and what became of it."""

    name: str
    expected: int | None  # None: the server must close the connection without an answer
    status: int | None = None
    body: Any = None
    content_type: str = ""
    seconds: float = 0.0
    #: answered; closed (no answer); truncated (part of one); hung (none within our timeout)
    outcome: str = "answered"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if self.expected is None:
            return self.outcome == "closed"
        return (
            self.outcome == "answered"
            and self.status == self.expected
            and self.status in DOCUMENTED
            and self.content_type.startswith("application/json")
            and isinstance(self.body, dict)
            and isinstance(self.body.get("error"), str)
            and self.body.get("status") == self.status
            and (self.status != 405 or "Allow" in self.headers)
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "status": self.status,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "body": self.body if isinstance(self.body, dict) else str(self.body)[:200],
        }


# -- requests --------------------------------------------------------------------------------


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")


async def raw_exchange(
    name: str, expected: int | None, port: int, parts: list[tuple[float, bytes]], timeout: float
) -> Exchange:
    """Write `parts` (a delay before each, then bytes) on one connection; read one answer."""
    ex = Exchange(name, expected)
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for delay, data in parts:
            await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            ex.status = int(lines[0].split()[1])
            ex.headers = {k.strip(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            ex.content_type = ex.headers.get("Content-Type", "")
            ex.body = _json_or_text(await reader.readexactly(int(ex.headers.get("Content-Length", "0"))))
    except asyncio.IncompleteReadError as partial:
        ex.outcome = "truncated" if partial.partial else "closed"
    except (ConnectionError, OSError):
        ex.outcome = "closed"
    except TimeoutError:
        ex.outcome = "hung"
    finally:
        ex.seconds = time.monotonic() - t0
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return ex


async def post(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    expected: int | None,
    data: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    timeout: float = 20.0,
) -> Exchange:
    ex = Exchange(name, expected)
    t0 = time.monotonic()
    headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with session.request(
            method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as answer:
            ex.status, ex.content_type = answer.status, answer.headers.get("Content-Type", "")
            ex.headers = dict(answer.headers)
            ex.body = _json_or_text(await answer.read())
    except TimeoutError:
        ex.outcome = "hung"
    except (aiohttp.ClientError, OSError):
        ex.outcome = "closed"
    ex.seconds = time.monotonic() - t0
    return ex


def surrogate_bodies() -> dict[str, bytes]:
    """A lone surrogate, as a JSON escape, in each place a caller controls."""
    return {
        "lone_surrogate_payload": b'{"payload": "\\ud800"}',
        "lone_surrogate_key": b'{"payload": "a", "key": "\\udfff"}',
        "lone_surrogate_property_name": b'{"payload": "a", "properties": {"\\ud800k": "v"}}',
        "lone_surrogate_property_value": b'{"payload": "a", "properties": {"k": "x\\udc00"}}',
    }


async def single_attacks(
    session: aiohttp.ClientSession, base: str, port: int, loop_check: dict[str, float]
) -> list[Exchange]:
    url = f"{base}/messages"
    bodies: list[tuple[str, int, bytes]] = [(n, 422, b) for n, b in surrogate_bodies().items()]
    bodies += [
        ("nan", 400, b'{"payload": "a", "x": NaN}'),
        ("infinity", 400, b'{"payload": "a", "x": -Infinity}'),
        ("not_utf8", 400, b'{"payload": "\xff\xfe"}'),
        ("deep_nesting", 400, b"[" * 100_000 + b"]" * 100_000),
        ("not_an_object", 400, b"[1, 2]"),
        ("payload_missing", 422, b"{}"),
        ("payload_not_a_string", 422, b'{"payload": 5}'),
        ("property_not_a_string", 422, b'{"payload": "a", "properties": {"k": 1}}'),
        ("properties_a_list", 422, b'{"payload": "a", "properties": []}'),
        (
            "too_many_properties",
            422,
            json.dumps({"payload": "a", "properties": {str(i): "v" for i in range(65)}}).encode(),
        ),
        ("key_not_a_string", 422, b'{"payload": "a", "key": 1}'),
        ("giant_body_10MB", 413, b'{"payload": "' + b"x" * (10 * MIB) + b'"}'),
        # Under the body limit (1 MiB), but over the broker's frame once base64-encoded: refused
        # before sending (the review saw a resend loop and a 503 after 30 s).
        ("frame_over_broker_limit", 413, json.dumps({"payload": "x" * 900_000}).encode()),
    ]
    out = [await post(session, url, name, expected, data) for name, expected, data in bodies]
    out.append(
        await post(session, url, "text_plain", 415, b'{"payload": "a"}', {"Content-Type": "text/plain"})
    )
    out.append(await post(session, url, "wrong_method", 405, b"", method="GET"))

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * MIB

    chunked = Exchange("giant_chunked_10MB", 413)
    t0 = time.monotonic()
    try:
        async with session.post(url, data=chunks(), headers={"Content-Type": "application/json"}) as answer:
            chunked.status, chunked.content_type = answer.status, answer.headers.get("Content-Type", "")
            chunked.body = _json_or_text(await answer.read())
    except (aiohttp.ClientError, OSError):
        chunked.outcome = "closed"  # the server may close while we still send: no answer seen
    chunked.seconds = time.monotonic() - t0
    out.append(chunked)
    # Bodies are not inflated (Content-Encoding is not honoured): 400, not JSON. When aiohttp
    # inflated them, the 413 came at once but draining the rest stalled the loop for 1-2 s.
    bomb = gzip.compress(b'{"payload": "' + b"a" * (200 * MIB) + b'"}', compresslevel=9)
    out.append(await post(session, url, "gzip_bomb_200MB", 400, bomb, {"Content-Encoding": "gzip"}))
    t0 = time.monotonic()
    async with session.get(f"{base}/livez") as answer:
        await answer.read()
    loop_check["livez_after_gzip_bomb_s"] = time.monotonic() - t0

    head = b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    body = b'{"payload": "a"}'
    raw = [
        ("header_line_9KB", 400, [(0, head + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n")]),
        ("request_line_9KB", 400, [(0, b"POST /messages?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")]),
        ("content_length_short", 400, [(0, head + b"Content-Length: 5\r\n\r\n" + body)]),
        ("content_length_not_a_number", 400, [(0, head + b"Content-Length: abc\r\n\r\n" + body)]),
        (
            "content_length_and_chunked",
            400,
            [(0, head + b"Content-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n" + body)],
        ),
    ]
    for name, expected, parts in raw:
        out.append(await raw_exchange(name, expected, port, parts, timeout=15))
    return out


async def slow_attacks(port: int) -> list[Exchange]:
    """Slowloris heads (closed at the head deadline) and half bodies (408 at the body deadline)."""
    head = b"POST /messages HTTP/1.1\r\nHost: x\r\n"
    drip = [(0.0, head)] + [(2.0, f"X-Drip-{i}: a\r\n".encode()) for i in range(20)]
    half = [(0.0, head + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b"{" * 500)]
    wait = DEADLINE_S
    return list(
        await asyncio.gather(
            *(raw_exchange(f"slowloris_{i}", None, port, drip, wait) for i in range(3)),
            *(raw_exchange(f"half_body_{i}", 408, port, half, wait) for i in range(2)),
        )
    )


# The legitimate caller runs in a process of its own: timed in this one, it would measure this
# process's own event loop, busy launching the flood, rather than the producer. It posts one
# message after another (20 ms apart) from "go" until told to stop, after the flood.
LEGIT_CLIENT = """
import http.client, json, select, sys, time
port = int(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
answers = []
while True:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started, t0 = time.time(), time.monotonic()
    body = json.dumps({"payload": f"legit {len(answers)}"})
    conn.request("POST", "/messages", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    text = answer.read()
    seconds = time.monotonic() - t0
    answers.append({"status": answer.status, "started": started, "seconds": seconds})
    answers[-1]["body"] = json.loads(text)
    conn.close()
    if select.select([sys.stdin], [], [], 0.02)[0]:
        break
print(json.dumps(answers), flush=True)
"""


@dataclass
class Legit:
    """The legitimate POSTs: latency of those sent while the flood was being answered."""

    during_flood: list[float] = field(default_factory=list)
    all_answers: int = 0
    refused: int = 0


async def flood_with_legit(port: int, legit_ids: dict[str, str]) -> tuple[list[Exchange], Legit]:
    """FLOOD lone-surrogate requests at once, and legitimate POSTs one after another meanwhile."""
    url = f"http://127.0.0.1:{port}/messages"
    variants = list(surrogate_bodies().items())
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LEGIT_CLIENT,
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdin is not None and client.stdout is not None
    await client.stdout.readline()  # ready
    client.stdin.write(b"go\n")
    await client.stdin.drain()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as flood_session:
        flood_start = time.time()
        flood = await asyncio.gather(
            *(
                post(flood_session, url, variants[i % len(variants)][0], 422, variants[i % len(variants)][1])
                for i in range(FLOOD)
            )
        )
        flood_end = time.time()
    client.stdin.write(b"stop\n")
    await client.stdin.drain()
    answers = json.loads(await client.stdout.readline())
    await client.wait()
    legit = Legit(all_answers=len(answers))
    for i, a in enumerate(answers):
        if a["status"] != 201:
            legit.refused += 1
            continue
        legit_ids[str(a["body"]["messageId"])] = f"legit_{i}"
        if flood_start <= a["started"] <= flood_end:
            legit.during_flood.append(float(a["seconds"]))
    return flood, legit


async def forge(session: aiohttp.ClientSession, base: str, real_id: str, ids: dict[str, str]) -> int:
    """Invented producers with seq jumps, and a huge seq under the real producer's id."""
    refused = 0
    bodies = [
        {"payload": "forged", "properties": {"producer_id": f"forged-{i}", "seq": seq}}
        for i in range(FORGED_PRODUCERS)
        for seq in ("1", "100001", "100000000000")
    ]
    bodies.append({"payload": "forged", "properties": {"producer_id": real_id, "seq": "99999999"}})
    for body in bodies:
        async with session.post(f"{base}/messages", json=body) as answer:
            if answer.status == 201:
                ids[str((await answer.json())["messageId"])] = "forged"
            else:
                refused += 1
    return refused
