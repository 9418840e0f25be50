"""Duplicate and gap detection by (producer_id, seq).

At-least-once delivery means a takeover or reconnect can deliver a message twice; a lost
message shows as a sequence number that never arrives. Per producer we keep the highest seq
seen and the set of numbers skipped below it (bounded), which is enough to tell new, late
and duplicate apart without remembering every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from consumer import metrics

#: Skipped numbers remembered per producer; beyond that the oldest are forgotten (and stay counted as gaps).
MAX_MISSING = 100_000
MAX_PRODUCERS = 1_000

Verdict = Literal["new", "late", "duplicate"]


@dataclass
class _ProducerState:
    highest: int = 0
    missing: set[int] = field(default_factory=set)


class SequenceTracker:
    def __init__(self) -> None:
        self._producers: dict[str, _ProducerState] = {}
        self.duplicates = 0
        self.gaps = 0

    @property
    def missing(self) -> int:
        """Numbers skipped and not (yet) received, over all producers."""
        return sum(len(p.missing) for p in self._producers.values())

    def observe(self, producer_id: str, seq: int) -> Verdict:
        state = self._producers.get(producer_id)
        if state is None:
            if len(self._producers) >= MAX_PRODUCERS:
                self._producers.pop(next(iter(self._producers)))
            # A consumer that joins late starts from whatever it first sees: not a gap.
            state = self._producers[producer_id] = _ProducerState(highest=seq - 1)
        if seq > state.highest:
            skipped = seq - state.highest - 1
            if skipped:
                self.gaps += skipped
                metrics.SEQUENCE_GAPS.inc(skipped)
                if len(state.missing) + skipped <= MAX_MISSING:
                    state.missing.update(range(state.highest + 1, seq))
            state.highest = seq
            return "new"
        if seq in state.missing:
            state.missing.discard(seq)
            return "late"
        self.duplicates += 1
        metrics.DUPLICATES.inc()
        return "duplicate"
