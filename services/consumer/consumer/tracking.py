"""Duplicate and gap detection by (producer_id, seq), in bounded memory whatever arrives.

At-least-once delivery means a takeover or reconnect can deliver a message twice; a lost
message shows as a sequence number that never arrives. Anyone who can publish can also send
any `producer_id` and `seq`, so every structure here has a fixed bound:

- at most `MAX_PRODUCERS` producers are tracked; the least recently seen is forgotten first;
- per producer, only numbers within `WINDOW` below the highest one seen are judged; at most
  `MAX_MISSING` skipped numbers are remembered (the rest still count as gaps);
- a jump of more than `MAX_JUMP` forward, or more than `WINDOW` back, is a sequence reset
  (a restarted or forged producer), counted apart: it is not a gap, and the numbers after it
  are not duplicates.

In Shared and Key_Shared subscriptions each replica receives only part of the sequence, so
gaps mean nothing there: the tracker then only recognises duplicates, among the last
`SEEN` numbers it saw per producer.

Worst case, all bounds full: about 64 x 1,000 remembered numbers, a few MB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from consumer import metrics

MAX_PRODUCERS = 64
WINDOW = 10_000
MAX_MISSING = 1_000
SEEN = 1_000
MAX_JUMP = 1_000_000

Verdict = Literal["new", "late", "duplicate", "reset"]


@dataclass
class _Producer:
    highest: int
    missing: set[int] = field(default_factory=set)  # ordered mode: skipped, not yet received
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)  # unordered mode


class SequenceTracker:
    def __init__(self, ordered: bool = True) -> None:
        #: False for Shared and Key_Shared: no gap counting, duplicates only.
        self.ordered = ordered
        self._producers: OrderedDict[str, _Producer] = OrderedDict()
        self.duplicates = 0
        self.gaps = 0
        self.resets = 0

    @property
    def missing(self) -> int:
        """Numbers skipped and not (yet) received, over the tracked producers."""
        return sum(len(p.missing) for p in self._producers.values())

    @property
    def producers(self) -> int:
        return len(self._producers)

    def observe(self, producer_id: str, seq: int) -> Verdict:
        state = self._producers.get(producer_id)
        if state is None:
            if len(self._producers) >= MAX_PRODUCERS:
                self._producers.popitem(last=False)
            # A consumer that joins late starts from whatever it first sees: not a gap.
            state = self._producers[producer_id] = _Producer(highest=seq - 1)
        else:
            self._producers.move_to_end(producer_id)
        if seq - state.highest > MAX_JUMP or state.highest - seq > WINDOW:
            self._reset(state, seq)
            return "reset"
        if self.ordered:
            return self._ordered(state, seq)
        return self._unordered(state, seq)

    def _reset(self, state: _Producer, seq: int) -> None:
        self.resets += 1
        metrics.SEQUENCE_RESETS.inc()
        state.highest = seq
        state.missing.clear()
        state.seen.clear()
        state.seen[seq] = None

    def _ordered(self, state: _Producer, seq: int) -> Verdict:
        if seq > state.highest:
            skipped = seq - state.highest - 1
            if skipped:
                self.gaps += skipped
                metrics.SEQUENCE_GAPS.inc(skipped)
                room = MAX_MISSING - len(state.missing)
                if room > 0:
                    state.missing.update(range(max(state.highest + 1, seq - room), seq))
            state.highest = seq
            # Numbers that fell out of the window will never be judged: forget them.
            if state.missing and min(state.missing) < seq - WINDOW:
                state.missing = {m for m in state.missing if m >= seq - WINDOW}
            return "new"
        if seq in state.missing:
            state.missing.discard(seq)
            return "late"
        return self._duplicate()

    def _unordered(self, state: _Producer, seq: int) -> Verdict:
        if seq in state.seen:
            return self._duplicate()
        state.seen[seq] = None
        if len(state.seen) > SEEN:
            state.seen.popitem(last=False)
        state.highest = max(state.highest, seq)
        return "new"

    def _duplicate(self) -> Verdict:
        self.duplicates += 1
        metrics.DUPLICATES.inc()
        return "duplicate"
