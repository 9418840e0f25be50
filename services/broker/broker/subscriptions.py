"""Who gets which message: subscriptions (Exclusive, Failover, Shared, Key_Shared).

A subscription's cursor is Pulsar's: a mark-delete position (everything at or below it is
acknowledged) plus the set of individually acknowledged sequence numbers above it. Delivered
but unacknowledged messages are `pending`; negatively acknowledged, timed-out and orphaned
ones go to a replay heap that is served before new messages. Dispatch never awaits: frames
go to each consumer's outbox, and flow control (receiverQueueSize or pull-mode permits)
decides how many may be outstanding.
"""

from __future__ import annotations

import asyncio
import heapq
import zlib
from typing import TYPE_CHECKING

from broker.messages import CLOCK, Entry, delivery_frame
from broker.sessions import ConsumerSession

if TYPE_CHECKING:
    from broker.topics import Topic

#: Key_Shared: messages held back for busy consumers per dispatch round before reading stops.
KEY_SHARED_DEFER_LIMIT = 1000
NACK = 0  # timer epoch of a negative-ack delay (delivery epochs start at 1)
DELAYED = -1  # timer epoch of a message held back by deliverAt / deliverAfterMs
RESUME = -2  # timer epoch of the end of a Failover activation delay
#: Pulsar's `activeConsumerFailoverDelayTimeMillis`: a Failover subscription whose active
#: consumer changes (the first one included) starts reading for it only after this.
FAILOVER_DELAY_SECONDS = 1.0
#: Subscription types on which Pulsar counts redeliveries, delays delivery and dead-letters.
SHARED_TYPES = ("Shared", "Key_Shared")


def _slot(key: str | None, count: int) -> int:
    return zlib.crc32((key or "").encode()) % count


class Subscription:
    """A named cursor on a topic and the consumers sharing it."""

    def __init__(
        self,
        topic: Topic,
        sub_id: int,
        name: str,
        type_: str,
        mark_delete: int,
        acked: set[int] | None = None,
        *,
        durable: bool = True,
    ) -> None:
        self.topic = topic
        self.id = sub_id
        self.name = name
        self.type = type_
        self.durable = durable
        self.deleted = False
        self.mark_delete = mark_delete
        self.acked: set[int] = {seq for seq in acked or () if seq > mark_delete}
        self.read_position = mark_delete + 1
        self.pending: dict[int, tuple[ConsumerSession, int]] = {}
        self.replay: list[int] = []
        self.replay_set: set[int] = set()
        self.redeliveries: dict[int, int] = {}
        self.consumers: list[ConsumerSession] = []
        self.msg_out = 0
        self._rr = 0
        self._epoch = 0
        self._timers: list[tuple[float, int, int]] = []
        self._failover_active: ConsumerSession | None = None
        self._resume_at = 0.0
        #: Messages whose next redelivery goes to a dead letter topic instead (seq -> topic).
        self._dead_letters: dict[int, str] = {}
        self._timer: asyncio.TimerHandle | None = None

    # -- membership ------------------------------------------------------------------------------

    def refusal(self, type_: str) -> str | None:
        """Why a new consumer of `type_` cannot join now (Pulsar's wording), or None."""
        if not self.consumers:
            return None
        if type_ != self.type:
            return f"Subscription is of different type ({self.type})"
        if type_ == "Exclusive":
            return "Exclusive consumer is already connected"
        return None

    def add(self, consumer: ConsumerSession, type_: str) -> None:
        if self.type != type_:
            self.type = type_
            self.topic.broker.mark_dirty(self)
        self.consumers.append(consumer)
        self._order()
        self.topic.broker.schedule_dispatch(self)

    def remove(self, consumer: ConsumerSession) -> None:
        """A consumer left: what it had not acknowledged goes to the others (or the next one)."""
        if consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        for seq in sorted(consumer.unacked):
            if self.pending.pop(seq, None) is not None:
                self._requeue(seq, counted=False)
        consumer.unacked.clear()
        self._order()
        self.topic.broker.schedule_dispatch(self)

    def _order(self) -> None:
        if self.type == "Failover":
            before = self._failover_active
            self.consumers.sort(key=lambda c: (c.priority, c.name, c.id))
            self._failover_active = self.consumers[0] if self.consumers else None
            if self._failover_active is not None and self._failover_active is not before:
                self._resume_at = asyncio.get_running_loop().time() + FAILOVER_DELAY_SECONDS
                self._add_timer(self._resume_at, 0, RESUME)
        elif self.type == "Key_Shared":
            self.consumers.sort(key=lambda c: (c.name, c.id))

    @property
    def active(self) -> ConsumerSession | None:
        if self.type in ("Exclusive", "Failover") and self.consumers:
            return self.consumers[0]
        return None

    # -- dispatch --------------------------------------------------------------------------------

    def _held(self, entry: Entry) -> bool:
        """Delayed delivery, on Shared and Key_Shared only (Exclusive and Failover ignore it, as
        Pulsar does): hold `entry` back and come back to it when it is due."""
        if not entry.deliver_at_ms or self.type not in SHARED_TYPES:
            return False
        wait_ms = entry.deliver_at_ms - CLOCK.now_ms()
        if wait_ms <= 0:
            return False
        self._add_timer(asyncio.get_running_loop().time() + wait_ms / 1000, entry.seq, DELAYED)
        return True

    def _next_entry(self) -> Entry | None:
        topic = self.topic
        entries = topic.entries
        replay = self.replay
        while replay:
            seq = heapq.heappop(replay)
            self.replay_set.discard(seq)
            if seq <= self.mark_delete or seq in self.acked or seq in self.pending:
                continue
            entry = entries.get(seq)
            if entry is None:
                self._ack(seq)
                continue
            if self._held(entry):
                continue
            return entry
        acked = self.acked
        while self.read_position <= topic.last_seq:
            seq = self.read_position
            self.read_position = seq + 1
            if acked and seq in acked:
                continue
            entry = entries.get(seq)
            if entry is None:  # a gap left by a failed commit
                self._ack(seq)
                continue
            if self._held(entry):
                continue
            return entry
        return None

    def dispatch(self) -> None:
        consumers = self.consumers
        if not consumers or self.deleted:
            return
        if self.type in ("Exclusive", "Failover"):
            if self._resume_at and asyncio.get_running_loop().time() < self._resume_at:
                return  # the Failover activation delay; the RESUME timer dispatches again
            consumer = consumers[0]
            room = consumer.capacity()
            while room > 0:
                entry = self._next_entry()
                if entry is None:
                    break
                self._send(consumer, entry)
                room -= 1
        elif self.type == "Shared":
            self._dispatch_shared(consumers)
        else:
            self._dispatch_key_shared(consumers)

    def _dispatch_shared(self, consumers: list[ConsumerSession]) -> None:
        """Round robin within the best `priorityLevel` (lowest number) that has room; a lower
        level gets messages only while every consumer of the better ones is full (Pulsar)."""
        levels: dict[int, list[ConsumerSession]] = {}
        for consumer in consumers:
            levels.setdefault(consumer.priority, []).append(consumer)
        groups = [levels[level] for level in sorted(levels)]
        while True:
            target = None
            for group in groups:
                count = len(group)
                for step in range(count):
                    candidate = group[(self._rr + step) % count]
                    if candidate.capacity() > 0:
                        target = candidate
                        break
                if target is not None:
                    break
            if target is None:
                return
            entry = self._next_entry()
            if entry is None:
                return
            self._rr += 1
            self._send(target, entry)

    def _dispatch_key_shared(self, consumers: list[ConsumerSession]) -> None:
        count = len(consumers)
        full: set[int] = set()
        deferred: list[int] = []
        while len(full) < count and len(deferred) < KEY_SHARED_DEFER_LIMIT:
            entry = self._next_entry()
            if entry is None:
                break
            consumer = consumers[_slot(entry.key, count)]
            if consumer.capacity() > 0:
                self._send(consumer, entry)
            else:
                full.add(consumer.id)
                deferred.append(entry.seq)
        for seq in deferred:  # tried again first next round, so per-key order holds
            if seq not in self.replay_set:
                self.replay_set.add(seq)
                heapq.heappush(self.replay, seq)

    def _send(self, consumer: ConsumerSession, entry: Entry) -> None:
        seq = entry.seq
        self._epoch += 1
        self.pending[seq] = (consumer, self._epoch)
        consumer.unacked.add(seq)
        if consumer.pull_mode:
            consumer.leader.permits -= 1
        consumer.outbox.push(delivery_frame(entry, self.redeliveries.get(seq, 0)))
        if consumer.ack_timeout_ms > 0:
            loop = asyncio.get_running_loop()
            self._add_timer(loop.time() + consumer.ack_timeout_ms / 1000, seq, self._epoch)
        self.msg_out += 1
        self.topic.broker.stats.dispatched += 1

    # -- acknowledgements ------------------------------------------------------------------------

    def ack(self, seq: int) -> bool:
        """Individual ack from any consumer of this subscription; False for an unknown id."""
        owner = self.pending.pop(seq, None)
        if owner is not None:
            owner[0].unacked.discard(seq)
            self._ack(seq)
            self.topic.broker.schedule_dispatch(self)
            return True
        if seq <= self.mark_delete or seq in self.acked:
            return True  # a duplicate ack is harmless
        if seq >= self.read_position:
            return False  # never delivered
        self._ack(seq)  # acked while waiting for redelivery
        return True

    def _ack(self, seq: int) -> None:
        if self.redeliveries:
            self.redeliveries.pop(seq, None)
        if seq == self.mark_delete + 1:
            acked = self.acked
            while seq + 1 in acked:
                seq += 1
                acked.discard(seq)
            self.mark_delete = seq
        else:
            self.acked.add(seq)
            if self.durable:
                self.topic.broker.record_ack(self, seq)
        self.topic.broker.mark_dirty(self)

    def nack(self, seq: int, consumer: ConsumerSession) -> bool:
        owner = self.pending.pop(seq, None)
        if owner is None:
            return seq <= self.mark_delete or seq in self.acked or seq < self.read_position
        owner[0].unacked.discard(seq)
        self._mark_dead_letter(seq, consumer)
        if consumer.nack_delay_ms <= 0:
            self._redeliver(seq)
        else:
            self._add_timer(asyncio.get_running_loop().time() + consumer.nack_delay_ms / 1000, seq, NACK)
        self.topic.broker.schedule_dispatch(self)
        return True

    def _mark_dead_letter(self, seq: int, consumer: ConsumerSession) -> None:
        """Pulsar's dead letter policy: a message already redelivered `maxRedeliverCount` times
        goes to the dead letter topic at its next redelivery (Shared and Key_Shared only)."""
        if (
            consumer.dead_letter_topic is not None
            and self.type in SHARED_TYPES
            and self.redeliveries.get(seq, 0) >= consumer.max_redeliver
        ):
            self._dead_letters[seq] = consumer.dead_letter_topic

    def _redeliver(self, seq: int) -> None:
        dead_letter = self._dead_letters.pop(seq, None)
        if dead_letter is None:
            self._requeue(seq)
            return
        entry = self.topic.entries.get(seq)
        if entry is not None and seq > self.mark_delete and seq not in self.acked:
            self.topic.broker.dead_letter(self, entry, dead_letter)
            self._ack(seq)

    def _requeue(self, seq: int, counted: bool = True) -> None:
        """Deliver `seq` again. Like Pulsar 4.0, only Shared and Key_Shared count redeliveries
        (negative acks and ack timeouts); a departed consumer's messages come back uncounted."""
        if seq <= self.mark_delete or seq in self.acked:
            return
        if not counted:
            self.redeliveries.pop(seq, None)
        elif self.type in ("Shared", "Key_Shared"):
            self.redeliveries[seq] = self.redeliveries.get(seq, 0) + 1
        if seq not in self.replay_set:
            self.replay_set.add(seq)
            heapq.heappush(self.replay, seq)

    # -- timers (ack timeout, negative-ack delay) ------------------------------------------------

    def _add_timer(self, deadline: float, seq: int, epoch: int) -> None:
        heapq.heappush(self._timers, (deadline, seq, epoch))
        if self._timer is None or self._timer.when() > deadline:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timers and not self.deleted:
            self._timer = asyncio.get_running_loop().call_at(self._timers[0][0], self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, seq, epoch = heapq.heappop(timers)
            if epoch == NACK:
                if seq not in self.pending:
                    self._redeliver(seq)
                continue
            if epoch == RESUME:
                continue  # the dispatch scheduled below does it
            if epoch == DELAYED:
                if seq not in self.pending and seq not in self.replay_set:
                    self.replay_set.add(seq)
                    heapq.heappush(self.replay, seq)
                continue
            owner = self.pending.get(seq)
            if owner is not None and owner[1] == epoch:
                del self.pending[seq]
                owner[0].unacked.discard(seq)
                self._mark_dead_letter(seq, owner[0])
                self._redeliver(seq)
        self._arm()
        self.topic.broker.schedule_dispatch(self)

    # -- administration --------------------------------------------------------------------------

    def at_end_of_terminated_topic(self) -> bool:
        """Pulsar's `hasReachedEndOfTopic`: terminated, and nothing is left to read."""
        return self.topic.terminated and self.read_position > self.topic.last_seq and not self.replay

    def backlog(self) -> int:
        return max(0, self.topic.last_seq - self.mark_delete - len(self.acked))

    def clear_backlog(self) -> None:
        for seq, (consumer, _) in self.pending.items():
            consumer.unacked.discard(seq)
        self.pending.clear()
        self.replay.clear()
        self.replay_set.clear()
        self.redeliveries.clear()
        self.acked.clear()
        self.mark_delete = max(self.mark_delete, self.topic.last_seq)
        self.read_position = max(self.read_position, self.mark_delete + 1)
        self.topic.broker.mark_dirty(self)
        self.topic.broker.schedule_dispatch(self)

    def close(self) -> None:
        self.deleted = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timers.clear()
