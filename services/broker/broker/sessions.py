"""The broker's side of each WebSocket: a producer, consumer or reader session.

Named `...Session` so that they are never confused with the client library's `Producer`,
`Consumer` and `Reader`. A session holds what the broker needs about one connection (its
outbox, flow control, name and address for the stats); the topic and subscription logic
lives in `topics` and `subscriptions`.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from streampair.protocol import MAX_RECEIVER_QUEUE

from broker.messages import CLOCK, delivery_frame
from broker.outbox import Outbox

if TYPE_CHECKING:
    from broker.topics import Topic

_ids = itertools.count(1)


def next_connection_id() -> int:
    return next(_ids)


class ProducerSession:
    """A producer connection: answers go out through its outbox; too many unanswered pauses reading."""

    __slots__ = ("address", "connected_ms", "id", "inflight", "limit", "msg_in", "name", "outbox", "room")

    def __init__(self, name: str, outbox: Outbox, limit: int, address: str = "") -> None:
        self.id = next_connection_id()
        self.name = name
        self.outbox = outbox
        self.inflight = 0
        self.limit = limit
        self.msg_in = 0
        self.room = asyncio.Event()
        self.room.set()
        self.address = address
        self.connected_ms = CLOCK.now_ms()

    def answer(self, frame: bytes) -> None:
        self.outbox.push(frame)
        self.inflight -= 1
        if self.inflight < self.limit and not self.room.is_set():
            self.room.set()


class ConsumerSession:
    """One consumer WebSocket attached to a subscription."""

    __slots__ = (
        "ack_timeout_ms",
        "address",
        "connected_ms",
        "dead_letter_topic",
        "group",
        "id",
        "leader",
        "max_redeliver",
        "nack_delay_ms",
        "name",
        "outbox",
        "permits",
        "priority",
        "pull_mode",
        "queue_size",
        "unacked",
        "unsubscribed",
    )

    def __init__(
        self,
        *,
        name: str,
        outbox: Outbox,
        queue_size: int = MAX_RECEIVER_QUEUE,
        priority: int = 0,
        ack_timeout_ms: int = 0,
        nack_delay_ms: int = 60_000,
        pull_mode: bool = False,
        address: str = "",
        connected_ms: int = 0,
    ) -> None:
        self.id = next_connection_id()
        self.name = name
        self.outbox = outbox
        self.queue_size = queue_size
        self.priority = priority
        self.ack_timeout_ms = ack_timeout_ms
        self.nack_delay_ms = nack_delay_ms
        self.pull_mode = pull_mode
        self.permits = 0
        self.unacked: set[int] = set()
        #: Dead letter policy (Shared, Key_Shared): after this many redeliveries (0: never)...
        self.max_redeliver = 0
        #: ...the message moves to this topic.
        self.dead_letter_topic: str | None = None
        #: After `unsubscribe` the socket stays open but is attached to nothing (as on Pulsar).
        self.unsubscribed = False
        self.address = address
        self.connected_ms = connected_ms
        #: A multi-topic consumer's sessions (one per topic) share the receiver queue, and
        #: the leader's pull-mode permits; a single-topic session is its own leader.
        self.group: list[ConsumerSession] | None = None
        self.leader = self

    def sibling(self) -> ConsumerSession:
        """Another session of the same multi-topic consumer (same socket, settings, name)."""
        other = ConsumerSession(
            name=self.name,
            outbox=self.outbox,
            queue_size=self.queue_size,
            priority=self.priority,
            ack_timeout_ms=self.ack_timeout_ms,
            nack_delay_ms=self.nack_delay_ms,
            pull_mode=self.pull_mode,
            address=self.address,
            connected_ms=self.connected_ms,
        )
        other.max_redeliver = self.max_redeliver
        other.dead_letter_topic = self.dead_letter_topic
        other.leader = self
        return other

    def capacity(self) -> int:
        if self.pull_mode:
            return self.leader.permits
        if self.group is None:
            return self.queue_size - len(self.unacked)
        return self.queue_size - sum(len(session.unacked) for session in self.group)


class ReaderSession:
    """A non-durable cursor: reads forward from a position; acks only free flow-control room."""

    __slots__ = (
        "address",
        "connected_ms",
        "id",
        "name",
        "outbox",
        "outstanding",
        "position",
        "queue_size",
        "topic",
    )

    def __init__(self, topic: Topic, position: int, *, name: str, outbox: Outbox, queue_size: int) -> None:
        self.id = next_connection_id()
        self.topic = topic
        self.position = position
        self.name = name
        self.outbox = outbox
        self.queue_size = queue_size
        self.outstanding = 0
        self.address = ""
        self.connected_ms = 0

    def dispatch(self) -> None:
        topic = self.topic
        if self.position < topic.first_seq:
            self.position = topic.first_seq
        entries = topic.entries
        while self.outstanding < self.queue_size and self.position <= topic.last_seq:
            entry = entries.get(self.position)
            self.position += 1
            if entry is None:
                continue
            self.outbox.push(delivery_frame(entry, 0))
            self.outstanding += 1
            topic.broker.stats.dispatched += 1

    def at_end(self) -> bool:
        """Pulsar's `hasReachedEndOfTopic`: the topic is terminated and everything was read."""
        return self.topic.terminated and self.position > self.topic.last_seq

    def ack(self) -> None:
        if self.outstanding > 0:
            self.outstanding -= 1
            self.topic.broker.schedule_dispatch(self)
