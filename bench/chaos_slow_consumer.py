"""A deliberately slow consumer for the chaos suite's backpressure scenario (not a service).

The library `Consumer`, in a process of its own so that its memory can be sampled apart from
the chaos runner: it sleeps `CHAOS_DELAY_SECONDS` before acking each message, so the broker
builds a backlog while the consumer can hold at most `receiverQueueSize` unacked messages.
SIGUSR1 removes the delay (drain the backlog); SIGTERM stops it. Logs JSON lines like the
consumer service (`subscribed`, `received` with `properties`) so `harness` can read them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from streampair.connection import Connector
from streampair.consumer import Consumer
from streampair.settings import ServiceSettings


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def main() -> None:
    delay = float(os.environ.get("CHAOS_DELAY_SECONDS", "0.02"))
    connector = Connector(ServiceSettings().client_config())  # STREAM_URL etc. from the environment
    subscription = os.environ.get("SUBSCRIPTION_NAME", "consumer-subscription")
    consumer = Consumer(connector, subscription, "Exclusive", consumer_name="slow-consumer")
    loop = asyncio.get_running_loop()
    fast = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, fast.set)
    loop.add_signal_handler(signal.SIGTERM, consumer.interrupt)
    await consumer.connect_with_retry()
    emit("subscribed")
    try:
        async for message in consumer:
            if not fast.is_set():
                await asyncio.sleep(delay)
            emit("received", properties=message.properties)
            await consumer.ack(message)
    finally:
        await consumer.close()
        await connector.close()


if __name__ == "__main__":
    asyncio.run(main())
