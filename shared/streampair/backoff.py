"""Capped exponential backoff with full jitter (AWS architecture blog's "Full Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive retries: uniform in [0, min(cap, base * 2**attempt)].

    Full jitter spreads reconnecting clients apart after a broker restart, so they do not
    stampede it in lockstep.
    """

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def ceiling(self) -> float:
        return float(min(self.cap, self.base * (2 ** min(self.attempt, 62))))

    def next_delay(self) -> float:
        delay = self.rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def jittered(seconds: float, spread: float = 0.2, rng: random.Random | None = None) -> float:
    """`seconds` give or take `spread` (a fraction), for fixed-period retries such as a standby's."""
    r = rng or random
    return max(0.0, seconds * (1.0 + r.uniform(-spread, spread)))
