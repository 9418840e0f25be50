"""One side of a throughput or latency workload, run as its own process.

`python -m bench.worker '<json spec>'` publishes or consumes `count` messages and prints one
JSON line with what it measured. Producer and consumer run in separate processes (as the
services do), so neither steals the other's event loop or GIL. Roles:

- `publish`: our `streampair.producer.Producer`, pipelined (up to `window` in flight); with
  `rate` > 0 it is paced to that many messages per second instead of as fast as possible.
- `consume`: our `streampair.consumer.Consumer`; acks every message; records the latency of
  each (now minus the `sent_ns` property the publisher stamped just before sending).
- `native_publish` / `native_consume`: the same with Pulsar's own `pulsar-client` (binary
  protocol, its synchronous API as an application without asyncio uses it): `send_async` +
  `flush` (paced with `rate` > 0), and `receive` + `acknowledge`.
- `raw_ws_publish` / `raw_ws_consume`: a minimal WebSocket client (plain aiohttp, JSON frames,
  no library): what a user of Pulsar's WebSocket API gets with nothing in between, the yardstick
  of our WebSocket transport.

`publish` and `consume` speak whichever protocol the URL names (`ws://`: WebSocket, `pulsar://`:
binary), through the same library API.

A consumer prints `{"ready": true}` once subscribed, so the driver starts the publisher only then.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from collections.abc import Callable
from typing import Any

PAYLOAD_BYTES = 100


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Pacer:
    """A fixed rate: when each message is due."""

    def __init__(self, rate: float, start: float) -> None:
        self.rate = rate
        self.start = start

    def wait_until(self, index: int) -> float:
        """Monotonic time at which message number `index` (0-based) is due."""
        return self.start + index / self.rate

    def delay(self, index: int) -> float:
        """Seconds until message number `index` is due (0 or less: it is due)."""
        return self.wait_until(index) - time.monotonic()


# -- ours ------------------------------------------------------------------------------------------


def _settings(spec: dict[str, Any]) -> Any:
    from streampair.config import ClientConfig

    return ClientConfig(
        url=spec["url"],
        stream=spec["topic"],
        connect_timeout_seconds=10,
    )


async def publish(spec: dict[str, Any]) -> dict[str, Any]:
    from streampair.connection import Connector
    from streampair.producer import Producer

    count, rate = int(spec["count"]), float(spec.get("rate", 0))
    window = int(spec.get("window", 1000))
    payload = b"x" * PAYLOAD_BYTES
    connector = Connector(_settings(spec))
    producer = Producer(connector, max_pending=window)
    try:
        await producer.start()
        await asyncio.wait_for(producer.wait_connected(), 15)
        await producer.send(payload)  # the topic exists and the connection is warm
        # Every answer is checked, in order (they come in order), and at most a window of them
        # is held: a list of 100,000 futures would make the garbage collector's full passes the
        # largest cost of the run, which no real publisher pays (the native worker holds none).
        unanswered: collections.deque[asyncio.Future[str]] = collections.deque()
        wall0, t0 = time.time(), time.monotonic()
        pacer = Pacer(rate, t0) if rate > 0 else None
        for i in range(count):
            if pacer is not None and (delay := pacer.delay(i)) > 0:
                await asyncio.sleep(delay)
            props = {"sent_ns": str(time.time_ns())}
            unanswered.append(await producer.send_async(payload, props))
            if len(unanswered) > window:
                await unanswered.popleft()  # answered already, but for the last few
        for future in unanswered:
            await future
        seconds = time.monotonic() - t0
        return {
            "sent": count,
            "start": wall0,
            "seconds": seconds,
            "msgs_per_s": count / seconds,
            "cpu_s": time.process_time(),
        }
    finally:
        await producer.close()
        await connector.close()


async def consume(spec: dict[str, Any]) -> dict[str, Any]:
    from streampair.connection import Connector
    from streampair.consumer import Consumer

    count = int(spec["count"])
    connector = Connector(_settings(spec))
    consumer = Consumer(connector, spec["subscription"], "Exclusive")
    latencies: list[float] = []
    record = bool(spec.get("latencies", True))
    first = last = 0.0
    received = 0
    try:
        await consumer.connect_with_retry()
        _emit({"ready": True})
        # One watchdog for the whole run rather than a timer per message.
        watchdog = asyncio.get_running_loop().call_later(float(spec.get("timeout", 60)), consumer.interrupt)
        async for message in consumer:
            now_ns = time.time_ns()
            if received == 0:
                first = now_ns / 1e9
            received += 1
            last = now_ns / 1e9
            if record:
                sent = message.properties.get("sent_ns")
                if sent is not None:
                    latencies.append((now_ns - int(sent)) / 1e6)
            await consumer.ack(message)
            if received >= count:
                break
        watchdog.cancel()
        return {
            "received": received,
            "first": first,
            "last": last,
            "latencies_ms": latencies,
            "cpu_s": time.process_time(),
        }
    finally:
        await consumer.close()
        await connector.close()


# -- Pulsar's native client ------------------------------------------------------------------------


def native_publish(spec: dict[str, Any]) -> dict[str, Any]:
    import pulsar  # type: ignore[import-untyped]

    count, rate = int(spec["count"]), float(spec.get("rate", 0))
    payload = b"x" * PAYLOAD_BYTES
    client = pulsar.Client(spec["url"], operation_timeout_seconds=15, stats_interval_in_seconds=0)
    try:
        producer = client.create_producer(
            f"persistent://public/default/{spec['topic']}",
            block_if_queue_full=True,
            max_pending_messages=int(spec.get("window", 1000)),
            batching_enabled=bool(spec.get("batching", False)),
        )
        producer.send(payload)
        failures: list[str] = []

        def done(result: Any, _: Any) -> None:
            if result != pulsar.Result.Ok:
                failures.append(str(result))

        wall0, t0 = time.time(), time.monotonic()
        pacer = Pacer(rate, t0) if rate > 0 else None
        for i in range(count):
            if pacer is not None and (delay := pacer.delay(i)) > 0:
                time.sleep(delay)  # a synchronous client: blocking is how it waits
            producer.send_async(payload, done, properties={"sent_ns": str(time.time_ns())})
        producer.flush()
        seconds = time.monotonic() - t0
        producer.close()
        if failures:
            raise RuntimeError(f"{len(failures)} native sends failed: {failures[0]}")
        return {"sent": count, "start": wall0, "seconds": seconds, "msgs_per_s": count / seconds}
    finally:
        client.close()


def native_consume(spec: dict[str, Any]) -> dict[str, Any]:
    import pulsar

    count = int(spec["count"])
    client = pulsar.Client(spec["url"], operation_timeout_seconds=15, stats_interval_in_seconds=0)
    latencies: list[float] = []
    first = last = 0.0
    received = 0
    try:
        consumer = client.subscribe(
            f"persistent://public/default/{spec['topic']}",
            spec["subscription"],
            consumer_type=pulsar.ConsumerType.Exclusive,
            receiver_queue_size=1000,
        )
        _emit({"ready": True})
        deadline = time.monotonic() + float(spec.get("timeout", 60))
        while received < count and time.monotonic() < deadline:
            try:
                message = consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                continue
            now_ns = time.time_ns()
            if received == 0:
                first = now_ns / 1e9
            received += 1
            last = now_ns / 1e9
            sent = message.properties().get("sent_ns")
            if sent is not None:
                latencies.append((now_ns - int(sent)) / 1e6)
            consumer.acknowledge(message)
        consumer.close()
        return {"received": received, "first": first, "last": last, "latencies_ms": latencies}
    finally:
        client.close()


# -- a minimal WebSocket client ---------------------------------------------------------------------


def _ws_url(spec: dict[str, Any], kind: str) -> str:
    path = f"/ws/v2/{kind}/persistent/public/default/{spec['topic']}"
    return str(spec["url"]) + path + (f"/{spec['subscription']}" if kind == "consumer" else "")


async def raw_ws_publish(spec: dict[str, Any]) -> dict[str, Any]:
    """Frames by hand over one aiohttp WebSocket, up to `window` unanswered (contexts echoed)."""
    import base64

    import aiohttp

    count, rate = int(spec["count"]), float(spec.get("rate", 0))
    payload = base64.b64encode(b"x" * PAYLOAD_BYTES).decode()
    window = asyncio.Semaphore(int(spec.get("window", 1000)))
    answered = asyncio.Event()
    got = 0

    async with aiohttp.ClientSession() as session, session.ws_connect(_ws_url(spec, "producer")) as ws:

        async def answers() -> None:
            nonlocal got
            async for msg in ws:
                if json.loads(msg.data)["result"] != "ok":
                    raise RuntimeError(f"send failed: {msg.data}")
                got += 1
                window.release()
                if got == count + 1:
                    answered.set()

        reading = asyncio.create_task(answers())
        await window.acquire()
        await ws.send_str(json.dumps({"payload": payload, "context": "0"}))
        wall0, t0 = time.time(), time.monotonic()
        pacer = Pacer(rate, t0) if rate > 0 else None
        for i in range(count):
            if pacer is not None and (delay := pacer.delay(i)) > 0:
                await asyncio.sleep(delay)
            await window.acquire()
            sent_ns = {"sent_ns": str(time.time_ns())}
            await ws.send_str(json.dumps({"payload": payload, "context": str(i + 1), "properties": sent_ns}))
        await asyncio.wait_for(answered.wait(), 120)
        seconds = time.monotonic() - t0
        reading.cancel()
    return {"sent": count, "start": wall0, "seconds": seconds, "msgs_per_s": count / seconds}


async def raw_ws_consume(spec: dict[str, Any]) -> dict[str, Any]:
    """Each delivery parsed, timed and acked with one frame, as the WebSocket API asks."""
    import aiohttp

    count, record = int(spec["count"]), bool(spec.get("latencies", True))
    latencies: list[float] = []
    first = last = 0.0
    received = 0
    url = _ws_url(spec, "consumer")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, params={"receiverQueueSize": "1000"}) as ws,
    ):
        _emit({"ready": True})
        async with asyncio.timeout(float(spec.get("timeout", 60))):
            async for msg in ws:
                now_ns = time.time_ns()
                frame = json.loads(msg.data)
                if received == 0:
                    first = now_ns / 1e9
                received += 1
                last = now_ns / 1e9
                sent = (frame.get("properties") or {}).get("sent_ns")
                if record and sent is not None:
                    latencies.append((now_ns - int(sent)) / 1e6)
                await ws.send_str('{"messageId":"' + frame["messageId"] + '"}')
                if received >= count:
                    break
    return {"received": received, "first": first, "last": last, "latencies_ms": latencies}


ROLES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "publish": publish,
    "consume": consume,
    "native_publish": native_publish,
    "native_consume": native_consume,
    "raw_ws_publish": raw_ws_publish,
    "raw_ws_consume": raw_ws_consume,
}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    run = ROLES[spec["role"]]
    try:
        result = asyncio.run(run(spec)) if asyncio.iscoroutinefunction(run) else run(spec)
    except Exception as error:  # reported to the driver, which records it in the results
        _emit({"error": f"{type(error).__name__}: {error}"[:500]})
        return 1
    _emit({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
