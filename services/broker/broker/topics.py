"""Topics: the retained messages in memory, and who is attached (subscriptions, readers, producers).

A `non-persistent://` topic stores nothing: a message goes to the consumers and readers attached
(with room) when it is published and is then forgotten, and every id is `CAAQADAA`, as on Pulsar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.messages import CLOCK, Entry, encode_id, id_prefix, ok_frame
from broker.sessions import ProducerSession, ReaderSession
from broker.storage import row_id
from broker.subscriptions import Subscription

if TYPE_CHECKING:
    from broker.broker import Broker

#: Pulsar gives every message of a non-persistent topic this id (ledger 0, entry 0).
NON_PERSISTENT_ID = encode_id(id_prefix(0), 0)


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

    @property
    def persistent(self) -> bool:
        return self.name.startswith("persistent://")

    def deliver_now(
        self,
        producer: ProducerSession | None,
        payload: str,
        properties: dict[str, str],
        key: str | None,
        context: str | None,
        event_ms: int,
    ) -> None:
        """Publish on a non-persistent topic: answered at once, dispatched at once, not kept."""
        seq = self.next_seq
        self.last_seq = seq
        self.next_seq = seq + 1
        self.entries[seq] = Entry(seq, payload, properties, key, CLOCK.now_ms(), NON_PERSISTENT_ID, event_ms)
        for subscription in self.subscriptions.values():
            subscription.dispatch()
        for reader in self.readers:
            reader.dispatch()
        del self.entries[seq]
        self.first_seq = seq + 1
        if producer is not None:
            producer.msg_in += 1
            producer.outbox.push(ok_frame(NON_PERSISTENT_ID, context))

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
