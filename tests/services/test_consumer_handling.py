"""The consumer service's handling of any message: total parsing, bounded sequence tracking."""

from __future__ import annotations

import sys

import pytest
from consumer import tracking
from consumer.handler import MessageHandler, SimulatedFailure, parse_producer_id, parse_sent_at, parse_seq
from consumer.tracking import SequenceTracker
from hypothesis import given, settings
from hypothesis import strategies as st
from streampair.message import Message


def test_ordered_tracking_tells_new_late_duplicate_and_gaps() -> None:
    t = SequenceTracker()
    assert [t.observe("p", s) for s in (1, 2, 5, 3, 5, 4, 6)] == [
        "new",
        "new",
        "new",  # 3 and 4 skipped: two gaps
        "late",
        "duplicate",
        "late",
        "new",
    ]
    assert (t.gaps, t.missing, t.duplicates, t.resets) == (2, 0, 1, 0)


def test_a_late_joiner_starts_where_it_joins() -> None:
    t = SequenceTracker()
    assert t.observe("p", 1000) == "new" and t.gaps == 0


def test_a_forged_jump_is_a_reset_and_genuine_messages_stay_new() -> None:
    t = SequenceTracker()
    for seq in range(1, 51):
        t.observe("p", seq)
    assert t.observe("p", 99_999_999) == "reset"  # forged under the real producer's id
    assert t.observe("p", 51) == "reset"  # the genuine producer goes on: recognised again
    assert [t.observe("p", s) for s in range(52, 60)] == ["new"] * 8
    assert (t.gaps, t.duplicates, t.resets) == (0, 0, 2)


def test_memory_is_bounded_whatever_the_input() -> None:
    t = SequenceTracker()
    for i in range(tracking.MAX_PRODUCERS * 3):  # forged producer ids with big jumps
        t.observe(f"fake{i}", 1)
        t.observe(f"fake{i}", 100_001)
    assert t.producers == tracking.MAX_PRODUCERS
    assert t.missing <= tracking.MAX_PRODUCERS * tracking.MAX_MISSING
    assert t.gaps == tracking.MAX_PRODUCERS * 3 * 99_999  # still counted, not remembered
    per_producer = max(len(p.missing) for p in t._producers.values())
    assert per_producer <= tracking.MAX_MISSING


def test_the_least_recently_seen_producer_is_forgotten_first() -> None:
    t = SequenceTracker()
    t.observe("keep", 1)
    for i in range(tracking.MAX_PRODUCERS - 1):
        t.observe(f"other{i}", 1)
    t.observe("keep", 2)  # recently seen again
    t.observe("newcomer", 1)  # evicts other0, not keep
    assert t.observe("keep", 2) == "duplicate"
    assert t.observe("other0", 1) == "new"  # forgotten: starts afresh


def test_unordered_tracking_counts_no_gaps_only_duplicates() -> None:
    t = SequenceTracker(ordered=False)
    assert [t.observe("p", s) for s in (1, 3, 5, 3, 7)] == ["new", "new", "new", "duplicate", "new"]
    assert (t.gaps, t.missing, t.duplicates) == (0, 0, 1)


@pytest.mark.parametrize(
    ("raw", "seq"),
    [("17", 17), ("\u00b2", None), ("9" * 5000, None), ("-1", None), (" 1", None), ("", None), (None, None)],
)
def test_seq_parsing_is_total(raw: str | None, seq: int | None) -> None:
    assert parse_seq(raw) == seq


def test_sent_at_and_producer_id_parsing_is_total() -> None:
    assert parse_sent_at("1500") == 1.5
    assert parse_sent_at("\u00b9\u00b2") is None and parse_sent_at("9" * 400) is None
    assert parse_producer_id("vm-3fa2c1") == "vm-3fa2c1"
    assert parse_producer_id("a b") is None and parse_producer_id("x" * 101) is None


def message(properties: dict[str, str], data: bytes = b"x") -> Message:
    return Message(id="id", data=data, properties=properties)


async def test_the_adversarial_messages_are_counted_not_fatal() -> None:
    handler = MessageHandler(log_payloads=False)
    for props in (
        {"producer_id": "evil", "seq": "\u00b2"},
        {"producer_id": "evil", "seq": "9" * 5000},
        {"producer_id": "evil", "seq": "1", "sent_at": "\u00b9\u00b2"},
        {"producer_id": "evil", "seq": "2", "sent_at": "9" * 400},
    ):
        await handler.handle(message(props))
    assert handler.received == 4 and handler.malformed == 4


async def test_fail_on_property_raises_for_marked_messages_only() -> None:
    handler = MessageHandler(log_payloads=False, fail_on_property="poison")
    await handler.handle(message({"seq": "1"}))
    with pytest.raises(SimulatedFailure):
        await handler.handle(message({"poison": ""}))


@settings(max_examples=300, deadline=None)
@given(
    properties=st.dictionaries(
        st.sampled_from(["producer_id", "seq", "sent_at"]) | st.text(max_size=20),
        st.text(max_size=50) | st.integers(min_value=-(10**30), max_value=10**30).map(str),
        max_size=6,
    ),
    data=st.binary(max_size=200),
    key=st.none() | st.text(max_size=20),
)
async def test_no_message_can_make_the_handler_raise(
    properties: dict[str, str], data: bytes, key: str | None
) -> None:
    handler = MessageHandler(log_payloads=True)
    await handler.handle(Message(id="m", data=data, properties=properties, key=key))
    assert handler.received == 1


async def test_forged_requests_do_not_grow_memory() -> None:
    """The adversarial H2 case (7 MB per forged producer id before): now a fixed bound."""
    handler = MessageHandler(log_payloads=False)
    before = _size(handler.tracker)
    for i in range(200):
        await handler.handle(message({"producer_id": f"fake{i}", "seq": "1"}))
        await handler.handle(message({"producer_id": f"fake{i}", "seq": "100001"}))
    assert _size(handler.tracker) - before < 8 * 1024 * 1024


def _size(tracker: SequenceTracker) -> int:
    total = sys.getsizeof(tracker._producers)
    for state in tracker._producers.values():
        total += sys.getsizeof(state.missing) + sys.getsizeof(state.seen) + 28 * len(state.missing)
    return total
