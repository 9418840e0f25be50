"""Topics: the retained messages in memory, and who is attached (subscriptions, readers, producers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.messages import Entry, id_prefix
from broker.sessions import ProducerSession, ReaderSession
from broker.storage import row_id
from broker.subscriptions import Subscription

if TYPE_CHECKING:
    from broker.broker import Broker


class Topic:
    """A persistent topic: the retained messages in memory, its subscriptions, readers, producers."""

    def __init__(self, broker: Broker, topic_id: int, name: str, created_ms: int, last_seq: int) -> None:
        self.broker = broker
        self.id = topic_id
        self.name = name
        self.created_ms = created_ms
        self.prefix = id_prefix(topic_id)
        self.entries: dict[int, Entry] = {}
        self.first_seq = last_seq + 1
        self.last_seq = last_seq
        self.next_seq = last_seq + 1
        self.persisted_seq = last_seq
        self.subscriptions: dict[str, Subscription] = {}
        self.readers: set[ReaderSession] = set()
        self.producers: dict[int, ProducerSession] = {}
        self.deleted = False
        #: Terminated (admin `terminate`): no more publishes; its end is final.
        self.terminated = False

    def floor(self) -> int:
        """Messages at or below this sequence number are no longer needed."""
        if self.subscriptions:
            return min(sub.mark_delete for sub in self.subscriptions.values())
        return self.last_seq - self.broker.retention

    def trim(self) -> tuple[int, int] | None:
        floor = self.floor()
        if floor < self.first_seq:
            return None
        entries = self.entries
        if len(entries) < floor - self.first_seq + 1:
            for seq in [seq for seq in entries if seq <= floor]:
                del entries[seq]
        else:
            for seq in range(self.first_seq, floor + 1):
                entries.pop(seq, None)
        low = self.first_seq
        self.first_seq = floor + 1
        return row_id(self.id, low), row_id(self.id, floor)

    def connected_consumers(self) -> int:
        return sum(len(sub.consumers) for sub in self.subscriptions.values())
