"""Durable storage in SQLite: messages, topics, subscription cursors and individual acks.

WAL mode with `synchronous=NORMAL` (the default `BROKER_SYNC`): a commit is in the OS before
the broker answers `ok`, so killing the process (kill -9 included) loses nothing that was
answered; only a power cut or kernel crash may lose the last commits. `BROKER_SYNC=full` also
fsyncs each commit. All writes go through one thread, one transaction per group commit.

A message's row id is `topic_id << 40 | seq`: one integer key, ordered by topic then sequence,
so trimming a topic is one range delete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SEQ_BITS = 40
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY, publish_ms INTEGER NOT NULL, key TEXT, props BLOB, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions(
    id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    mark_delete INTEGER NOT NULL, UNIQUE(topic_id, name));
CREATE TABLE IF NOT EXISTS acks(sub_id INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(sub_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names(kind TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY(kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grants(resource TEXT NOT NULL, role TEXT NOT NULL, actions TEXT NOT NULL,
    PRIMARY KEY(resource, role)) WITHOUT ROWID;
"""

#: Columns added after schema version 1; an older database gets them at open.
ADDED_COLUMNS = (
    ("messages", "event_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "deliver_at_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("topics", "terminated", "INTEGER NOT NULL DEFAULT 0"),
)


#: The row inserts and updates of a batch, in this order; `write` pairs each with its rows.
BATCH_WRITES = (
    "INSERT INTO topics(id, name, created_ms) VALUES(?, ?, ?)",
    "INSERT INTO messages(id, publish_ms, key, props, payload, event_ms, deliver_at_ms)"
    " VALUES(?, ?, ?, ?, ?, ?, ?)",
    "UPDATE topics SET last_seq = ? WHERE id = ?",
    "INSERT INTO subscriptions(id, topic_id, name, type, mark_delete) VALUES(?, ?, ?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET type = excluded.type, mark_delete = excluded.mark_delete",
    "INSERT OR IGNORE INTO acks(sub_id, seq) VALUES(?, ?)",
    "DELETE FROM acks WHERE sub_id = ? AND seq <= ?",
)


class StorageError(Exception):
    """The data directory cannot be used (locked by another broker, unreadable, corrupt)."""


def row_id(topic_id: int, seq: int) -> int:
    return (topic_id << SEQ_BITS) | seq


@dataclass(slots=True)
class TopicRow:
    id: int
    name: str
    created_ms: int
    last_seq: int
    terminated: bool


@dataclass(slots=True)
class SubscriptionRow:
    id: int
    topic_id: int
    name: str
    type: str
    mark_delete: int


@dataclass(slots=True)
class StoredMessage:
    seq: int
    publish_ms: int
    key: str | None
    props: bytes | None
    payload: bytes
    event_ms: int
    deliver_at_ms: int


@dataclass(slots=True)
class WriteBatch:
    """Everything one group commit writes, in the order it is applied."""

    new_topics: list[tuple[int, str, int]] = field(default_factory=list)
    messages: list[tuple[int, int, str | None, bytes | None, bytes, int, int]] = field(default_factory=list)
    #: (kind, name, present): tenants and namespaces created or deleted through the admin API.
    names: list[tuple[str, str, bool]] = field(default_factory=list)
    #: (resource, role, actions as JSON or None to revoke): permissions set through the admin API.
    grants: list[tuple[str, str, str | None]] = field(default_factory=list)
    terminated_topics: list[int] = field(default_factory=list)
    topic_last_seq: list[tuple[int, int]] = field(default_factory=list)  # (last_seq, topic_id)
    cursors: list[tuple[int, int, str, str, int]] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (sub_id, seq)
    deleted_subs: list[int] = field(default_factory=list)
    trims: list[tuple[int, int]] = field(default_factory=list)  # row id range, inclusive
    deleted_topics: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.new_topics
            or self.messages
            or self.cursors
            or self.acks
            or self.deleted_subs
            or self.trims
            or self.deleted_topics
            or self.names
            or self.grants
            or self.terminated_topics
        )


class Store:
    """One SQLite database in the data directory, locked against a second broker."""

    def __init__(self, data_dir: Path, *, sync: str = "normal") -> None:
        self.data_dir = data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] = (data_dir / "broker.lock").open("wb")
        except OSError as error:
            raise StorageError(f"cannot use data directory {data_dir}: {error.strerror}") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise StorageError(f"data directory {data_dir} is in use by another broker") from None
        try:
            self._db = sqlite3.connect(
                data_dir / "broker.sqlite3", isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as error:
            self.close()
            raise StorageError(f"cannot open the database in {data_dir}: {error}") from None

    # -- reading, at start-up only ------------------------------------------------------------

    def topics(self) -> list[TopicRow]:
        rows = self._db.execute("SELECT id, name, created_ms, last_seq, terminated FROM topics ORDER BY id")
        return [TopicRow(i, n, c, s, bool(t)) for i, n, c, s, t in rows]

    def names(self) -> list[tuple[str, str]]:
        return list(self._db.execute("SELECT kind, name FROM names"))

    def grants(self) -> list[tuple[str, str, str]]:
        return list(self._db.execute("SELECT resource, role, actions FROM grants"))

    def subscriptions(self) -> list[SubscriptionRow]:
        rows = self._db.execute("SELECT id, topic_id, name, type, mark_delete FROM subscriptions ORDER BY id")
        return [SubscriptionRow(*row) for row in rows]

    def acks(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for sub_id, seq in self._db.execute("SELECT sub_id, seq FROM acks"):
            out.setdefault(sub_id, set()).add(seq)
        return out

    def messages(self, topic_id: int, after_seq: int) -> Iterator[StoredMessage]:
        low = row_id(topic_id, after_seq)
        high = row_id(topic_id + 1, 0)
        cursor = self._db.execute(
            "SELECT id, publish_ms, key, props, payload, event_ms, deliver_at_ms FROM messages"
            " WHERE id > ? AND id < ? ORDER BY id",
            (low, high),
        )
        mask = (1 << SEQ_BITS) - 1
        for rid, publish_ms, key, props, payload, event_ms, deliver_at_ms in cursor:
            yield StoredMessage(rid & mask, publish_ms, key, props, payload, event_ms, deliver_at_ms)

    def size_bytes(self) -> int:
        total = 0
        for name in ("broker.sqlite3", "broker.sqlite3-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(self.data_dir / name).st_size
        return total

    # -- writing, on the writer thread ----------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        """Apply one batch in one transaction; on error nothing of it is kept."""
        db = self._db
        db.execute("BEGIN")
        try:
            # Deletions run first (a name deleted and reused in one batch must be free) and
            # again last (rows of a deleted topic or subscription written in this same batch).
            self._delete(batch)
            rows: tuple[Sequence[Sequence[Any]], ...] = (
                batch.new_topics,
                batch.messages,
                batch.topic_last_seq,
                batch.cursors,
                batch.acks,
                [(sub_id, mark) for sub_id, _, _, _, mark in batch.cursors],  # acks now below the mark
            )
            for sql, these in zip(BATCH_WRITES, rows, strict=True):
                if these:
                    db.executemany(sql, these)
            for kind, name, present in batch.names:
                if present:
                    db.execute("INSERT OR IGNORE INTO names(kind, name) VALUES(?, ?)", (kind, name))
                else:
                    db.execute("DELETE FROM names WHERE kind = ? AND name = ?", (kind, name))
            for resource, role, actions in batch.grants:
                if actions is None:
                    db.execute("DELETE FROM grants WHERE resource = ? AND role = ?", (resource, role))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO grants(resource, role, actions) VALUES(?, ?, ?)",
                        (resource, role, actions),
                    )
            if batch.terminated_topics:
                db.executemany(
                    "UPDATE topics SET terminated = 1 WHERE id = ?", [(t,) for t in batch.terminated_topics]
                )
            if batch.trims:
                db.executemany("DELETE FROM messages WHERE id >= ? AND id <= ?", batch.trims)
            self._delete(batch)
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL: the disk is full); a second
            # ROLLBACK would raise "no transaction is active" and hide the real cause.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _delete(self, batch: WriteBatch) -> None:
        db = self._db
        for sub_id in batch.deleted_subs:
            db.execute("DELETE FROM acks WHERE sub_id = ?", (sub_id,))
            db.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,))
        for topic_id in batch.deleted_topics:
            db.execute(
                "DELETE FROM acks WHERE sub_id IN (SELECT id FROM subscriptions WHERE topic_id = ?)",
                (topic_id,),
            )
            db.execute("DELETE FROM subscriptions WHERE topic_id = ?", (topic_id,))
            db.execute(
                "DELETE FROM messages WHERE id >= ? AND id < ?",
                (row_id(topic_id, 0), row_id(topic_id + 1, 0)),
            )
            db.execute("DELETE FROM topics WHERE id = ?", (topic_id,))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        with contextlib.suppress(Exception):
            self._lock.close()
