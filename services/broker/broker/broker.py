"""The broker core: the registry of topics and the single commit path to the store.

Publishing appends to the batch being gathered; one commit task writes the whole batch in one
SQLite transaction on the writer thread while the next batch fills, and only then answers the
producers and hands the messages to dispatch. So an `ok` always means "on disk", a consumer
never sees a message that could be lost, and durability costs one transaction per batch,
not per message.
"""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from streampair.logs import get_logger

from broker.grants import Permissions
from broker.messages import CLOCK, Entry, encode_id, error_frame, ok_frame
from broker.sessions import ProducerSession
from broker.storage import Store, WriteBatch, row_id
from broker.subscriptions import Subscription
from broker.topics import Topic

log = get_logger("broker.core")

#: Pause after a failed commit, so that a full disk does not become a busy loop.
COMMIT_RETRY_SECONDS = 0.5


#: A committed publish waiting for its answer: (topic, entry, producer or None, context).
Publication = tuple[Topic, Entry, ProducerSession | None, str | None]
#: What a fresh Pulsar standalone has; the admin API adds more.
DEFAULT_TENANTS = ("public", "pulsar")
DEFAULT_NAMESPACES = ("public/default",)
#: Macrometa's namespaces (`c8global.<fabric>`, `c8local.<fabric>`) exist for every tenant.
MACROMETA_NAMESPACES = ("c8global.", "c8local.")


class Dispatchable(Protocol):
    def dispatch(self) -> None: ...


@dataclass
class Stats:
    """Counters read by /metrics; plain ints so the hot path pays no locking."""

    published: int = 0
    published_bytes: int = 0
    dispatched: int = 0
    commits: int = 0
    commit_failures: int = 0
    bad_frames: dict[str, int] = field(default_factory=dict)
    rejections: dict[tuple[str, int], int] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=lambda: {"producer": 0, "consumer": 0, "reader": 0})

    def bad_frame(self, kind: str) -> None:
        self.bad_frames[kind] = self.bad_frames.get(kind, 0) + 1

    def rejected(self, role: str, status: int) -> None:
        self.rejections[(role, status)] = self.rejections.get((role, status), 0) + 1


class Broker:
    """The registry of topics and the single commit path to the store."""

    def __init__(self, store: Store, *, retention: int = 100_000) -> None:
        self.store = store
        self.retention = retention
        self.topics: dict[str, Topic] = {}
        self.tenants: set[str] = set(DEFAULT_TENANTS)
        self.namespaces: set[str] = set(DEFAULT_NAMESPACES)
        self.permissions = Permissions()
        self.stats = Stats()
        self._next_topic_id = 1
        self._next_sub_id = 1
        self._batch = WriteBatch()
        self._publishes: list[Publication] = []
        self._dirty_subs: set[Subscription] = set()
        self._dirty_topics: set[Topic] = set()
        self._to_dispatch: set[Dispatchable] = set()
        self._dispatch_scheduled = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-writer")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- start, stop, recovery -------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild topics, cursors and the unacknowledged messages from the store."""
        started = time.monotonic()
        acks = self.store.acks()
        for kind, name in self.store.names():
            (self.tenants if kind == "tenant" else self.namespaces).add(name)
        for resource, role, actions in self.store.grants():
            self.permissions.set(resource, role, tuple(orjson.loads(actions)))
        for row in self.store.topics():
            self.topics[row.name] = Topic(self, row.id, row.name, row.created_ms, row.last_seq)
            self.topics[row.name].terminated = row.terminated
            self._next_topic_id = max(self._next_topic_id, row.id + 1)
        by_id = {topic.id: topic for topic in self.topics.values()}
        for srow in self.store.subscriptions():
            self._next_sub_id = max(self._next_sub_id, srow.id + 1)
            topic = by_id.get(srow.topic_id)
            if topic is None:
                continue
            sub = Subscription(topic, srow.id, srow.name, srow.type, srow.mark_delete, acks.get(srow.id))
            topic.subscriptions[srow.name] = sub
        loaded = 0
        for topic in self.topics.values():
            floor = max(topic.floor(), 0)
            topic.first_seq = floor + 1
            if floor > 0:
                self._batch.trims.append((row_id(topic.id, 0), row_id(topic.id, floor)))
            for msg in self.store.messages(topic.id, floor):
                props = orjson.loads(msg.props) if msg.props else {}
                topic.entries[msg.seq] = Entry(
                    msg.seq,
                    base64.b64encode(msg.payload).decode("ascii"),
                    props,
                    msg.key,
                    msg.publish_ms,
                    encode_id(topic.prefix, msg.seq),
                    msg.event_ms,
                    msg.deliver_at_ms,
                )
                loaded += 1
        log.info(
            "storage_loaded",
            topics=len(self.topics),
            messages=loaded,
            seconds=round(time.monotonic() - started, 3),
        )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = self._loop.create_task(self._commit_loop())

    async def stop(self) -> None:
        """Write what is pending, then stop the writer and close the store."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        for topic in self.topics.values():
            for sub in topic.subscriptions.values():
                sub.close()
        self._executor.shutdown(wait=True)
        self.store.close()

    # -- hooks used by subscriptions and handlers ------------------------------------------------

    def schedule_dispatch(self, target: Dispatchable) -> None:
        self._to_dispatch.add(target)
        if not self._dispatch_scheduled and self._loop is not None:
            self._dispatch_scheduled = True
            self._loop.call_soon(self._run_dispatch)

    def _run_dispatch(self) -> None:
        self._dispatch_scheduled = False
        targets, self._to_dispatch = self._to_dispatch, set()
        for target in targets:
            target.dispatch()

    def mark_dirty(self, sub: Subscription) -> None:
        self._dirty_subs.add(sub)
        self._dirty_topics.add(sub.topic)
        if self._wake is not None:
            self._wake.set()

    def record_ack(self, sub: Subscription, seq: int) -> None:
        self._batch.acks.append((sub.id, seq))

    # -- topics and subscriptions ----------------------------------------------------------------

    def namespace_exists(self, tenant: str, namespace: str) -> bool:
        if namespace.startswith(MACROMETA_NAMESPACES):
            return True
        return tenant in self.tenants and f"{tenant}/{namespace}" in self.namespaces

    def set_name(self, kind: str, name: str, present: bool) -> None:
        """Create or delete a tenant or namespace (admin API), durably."""
        names = self.tenants if kind == "tenant" else self.namespaces
        if present:
            names.add(name)
        else:
            names.discard(name)
        self._batch.names.append((kind, name, present))
        self._wake_commit()

    def set_grant(self, resource: str, role: str, actions: tuple[str | None, ...] | None) -> None:
        """Grant (or, with None, revoke) a role's actions on a namespace or topic, durably."""
        self.permissions.set(resource, role, actions)
        self._batch.grants.append(
            (resource, role, None if actions is None else orjson.dumps(actions).decode())
        )
        self._wake_commit()

    def terminate(self, topic: Topic) -> None:
        """No more publishes, ever: what is there is the end of the topic (Pulsar `terminate`)."""
        if not topic.terminated:
            topic.terminated = True
            self._batch.terminated_topics.append(topic.id)
            self._wake_commit()
            log.info("topic_terminated", topic=topic.name)

    def dead_letter(self, sub: Subscription, entry: Entry, topic_name: str) -> None:
        """Publish a message that exhausted its redeliveries to `topic_name`, with the
        properties Pulsar 4.0.7's dead letter producer adds (its odd `..._IDY_TIME` included)."""
        origin = f"{sub.topic.id}:{entry.seq}:-1"
        properties = {
            **entry.properties,
            "REAL_TOPIC": sub.topic.name,
            "REAL_SUBSCRIPTION": sub.name,
            "ORIGIN_MESSAGE_ID": origin,
            "ORIGIN_MESSAGE_IDY_TIME": origin,
        }
        target = self.topic(topic_name, create=True)
        assert target is not None
        self.publish(target, None, base64.b64decode(entry.payload), properties, entry.key, None)
        log.info("dead_lettered", topic=sub.topic.name, subscription=sub.name, dead_letter_topic=topic_name)

    def topic(self, name: str, *, create: bool = False) -> Topic | None:
        topic = self.topics.get(name)
        if topic is None and create:
            topic = self.create_topic(name)
        return topic

    def create_topic(self, name: str) -> Topic:
        topic_id = self._next_topic_id
        self._next_topic_id += 1
        created = CLOCK.now_ms()
        topic = Topic(self, topic_id, name, created, 0)
        self.topics[name] = topic
        if topic.persistent:
            self._batch.new_topics.append((topic_id, name, created))
            self._wake_commit()
        log.info("topic_created", topic=name)
        return topic

    def delete_topic(self, topic: Topic) -> None:
        topic.deleted = True
        for sub in topic.subscriptions.values():
            sub.close()
        topic.subscriptions.clear()
        topic.entries.clear()
        self.topics.pop(topic.name, None)
        self._batch.deleted_topics.append(topic.id)
        self._wake_commit()
        log.info("topic_deleted", topic=topic.name)

    def subscription(
        self, topic: Topic, name: str, type_: str, *, durable: bool = True, earliest: bool = False
    ) -> Subscription:
        """The named subscription; a new one starts at the end of the topic (Latest) or at the
        oldest message it still holds (Earliest)."""
        sub = topic.subscriptions.get(name)
        if sub is None:
            sub_id = self._next_sub_id
            self._next_sub_id += 1
            start = topic.first_seq - 1 if earliest else topic.last_seq
            sub = Subscription(topic, sub_id, name, type_, start, durable=durable)
            topic.subscriptions[name] = sub
            if durable:
                self.mark_dirty(sub)
            log.info("subscription_created", topic=topic.name, subscription=name, type=type_)
        return sub

    def delete_subscription(self, sub: Subscription) -> None:
        sub.close()
        topic = sub.topic
        if topic.subscriptions.get(sub.name) is sub:
            del topic.subscriptions[sub.name]
        if sub.durable:
            self._batch.deleted_subs.append(sub.id)
        self._dirty_topics.add(topic)
        self._wake_commit()
        log.info("subscription_deleted", topic=topic.name, subscription=sub.name)

    # -- publishing and the commit loop ----------------------------------------------------------

    def publish(
        self,
        topic: Topic,
        producer: ProducerSession | None,
        raw: bytes,
        properties: dict[str, str],
        key: str | None,
        context: str | None,
        *,
        event_ms: int = 0,
        deliver_at_ms: int = 0,
    ) -> None:
        """Append a message to the batch being gathered; `producer` None: the broker's own
        publish (dead letters), answered to nobody."""
        # The payload is re-encoded, as Pulsar does: `YWI` (no padding) is delivered as `YWI=`.
        payload = base64.b64encode(raw).decode("ascii")
        if not topic.persistent:
            self.stats.published += 1
            topic.deliver_now(producer, payload, properties, key, context, event_ms)
            return
        seq = topic.next_seq
        topic.next_seq = seq + 1
        now = CLOCK.now_ms()
        entry = Entry(
            seq, payload, properties, key, now, encode_id(topic.prefix, seq), event_ms, deliver_at_ms
        )
        props = orjson.dumps(properties) if properties else None
        self._batch.messages.append((row_id(topic.id, seq), now, key, props, raw, event_ms, deliver_at_ms))
        self._publishes.append((topic, entry, producer, context))
        self._dirty_topics.add(topic)
        self.stats.published_bytes += len(raw)
        if producer is not None:
            producer.inflight += 1
            producer.msg_in += 1
            if producer.inflight >= producer.limit:
                producer.room.clear()
        self._wake_commit()

    def _wake_commit(self) -> None:
        if self._wake is not None and not self._wake.is_set():
            self._wake.set()

    def _take_batch(self) -> tuple[WriteBatch, list[Publication]]:
        batch, self._batch = self._batch, WriteBatch()
        publishes, self._publishes = self._publishes, []
        for sub in self._dirty_subs:
            if sub.durable and not sub.deleted and not sub.topic.deleted:
                batch.cursors.append((sub.id, sub.topic.id, sub.name, sub.type, sub.mark_delete))
        self._dirty_subs.clear()
        for topic in self._dirty_topics:
            if topic.deleted:
                continue
            trimmed = topic.trim()
            if trimmed is not None:
                batch.trims.append(trimmed)
            if topic.persistent and topic.next_seq - 1 > topic.persisted_seq:
                topic.persisted_seq = topic.next_seq - 1
                batch.topic_last_seq.append((topic.persisted_seq, topic.id))
        self._dirty_topics.clear()
        return batch, publishes

    async def _commit_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, publishes = self._take_batch()
            if batch:
                try:
                    await loop.run_in_executor(self._executor, self.store.write, batch)
                except Exception as error:
                    self._commit_failed(batch, publishes, error)
                    await asyncio.sleep(COMMIT_RETRY_SECONDS)
                    continue
                self.stats.commits += 1
                try:
                    self._complete(publishes)
                except Exception:  # a dispatch bug must not stop every future commit
                    log.exception("dispatch_failed")
            if self._stopping and not self._batch and not self._publishes and not self._dirty_subs:
                return

    def _commit_failed(
        self,
        batch: WriteBatch,
        publishes: list[Publication],
        error: Exception,
    ) -> None:
        """Publishes of the batch fail (send-error:8); cursor changes are tried again."""
        self.stats.commit_failures += 1
        log.error("commit_failed", error=type(error).__name__, detail=str(error)[:200])
        for _, _, producer, context in publishes:
            if producer is not None:
                producer.answer(error_frame(8, "failed to persist the message", context))
        retry = self._batch
        retry.new_topics[:0] = batch.new_topics
        retry.cursors[:0] = batch.cursors
        retry.acks[:0] = batch.acks
        retry.deleted_subs[:0] = batch.deleted_subs
        retry.trims[:0] = batch.trims
        retry.deleted_topics[:0] = batch.deleted_topics
        retry.names[:0] = batch.names
        retry.terminated_topics[:0] = batch.terminated_topics
        retry.topic_last_seq[:0] = batch.topic_last_seq
        self._wake_commit()

    def _complete(self, publishes: list[Publication]) -> None:
        touched: set[Topic] = set()
        for topic, entry, producer, context in publishes:
            topic.entries[entry.seq] = entry
            if entry.seq > topic.last_seq:
                topic.last_seq = entry.seq
            if producer is not None:
                producer.answer(ok_frame(entry.message_id, context))
            touched.add(topic)
        self.stats.published += len(publishes)
        for topic in touched:
            if topic.deleted:
                continue
            for sub in topic.subscriptions.values():
                sub.dispatch()
            for reader in topic.readers:
                reader.dispatch()
