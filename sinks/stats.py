"""Durations counted into fixed buckets, as plain data (read by `flows/metrics.py`)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Upper bounds in seconds, Prometheus' default histogram buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class Seconds:
    """How many durations fell at or below each bound of `BUCKETS` (the last count: above
    them all), and their sum. `observe` costs a bisect and two additions."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """`(le, count)` pairs, cumulative, ending with `+Inf`: a histogram's buckets."""
        out, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
