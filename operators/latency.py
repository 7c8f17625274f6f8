"""How long a live flow takes with a line: per worker and wall-clock minute, the lines it
handed over and the percentiles of their latency, as `LatencyRow`s (the `latency` table).

A line's latency runs from its arrival (`RawLine.arrived`: when the live source took it
from the Kafka consumer; every line of one consumer batch shares the stamp) to the end of
its processing by its match, when its rows are handed on to the sinks. Lines are counted
in the minute they are handed over.

Plain Python, and no clock here: the flow passes the wall-clock times in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from operators.rows import LatencyRow

MINUTE_MS = 60_000
PER_MILLE = (500, 950, 990)  # p50, p95, p99
STEPS_PER_MS = 10  # latencies are counted in tenths of a millisecond


@dataclass(slots=True)
class LatencyRecorder:
    """One worker's latencies of the open minute, as a histogram; a row per minute once the
    next one starts (`record`) or the flow ends (`flush`)."""

    worker: int
    minute: int = 0  # epoch ms of the open minute's start
    counts: Counter[int] = field(default_factory=Counter)  # latency in steps -> lines

    def record(self, arrivals: Iterable[float], now: float) -> list[LatencyRow]:
        """Lines that arrived at `arrivals` (epoch s; 0: not stamped, not counted) are
        handed over at `now` (epoch s). The rows of the minute that ended before, if any."""
        minute = int(now * 1000) // MINUTE_MS * MINUTE_MS
        out = self.flush() if minute != self.minute else []
        self.minute = minute
        counts = self.counts
        for arrived in arrivals:
            if arrived:  # a clock stepped back counts as no wait
                counts[max(0, round((now - arrived) * 1000 * STEPS_PER_MS))] += 1
        return out

    def flush(self) -> list[LatencyRow]:
        """The open minute's row (none when it has no line), and a fresh histogram."""
        counts, self.counts = self.counts, Counter()
        if not counts:
            return []
        return [latency_row(self.minute, self.worker, counts)]


def latency_row(minute: int, worker: int, counts: Counter[int]) -> LatencyRow:
    """The row of a histogram (latency in steps -> lines); percentiles by nearest rank."""
    lines = sum(counts.values())
    ranks = [-(-lines * p // 1000) for p in PER_MILLE]  # ceil(lines * p / 1000)
    found: list[float] = []
    seen = 0
    for steps in sorted(counts):
        seen += counts[steps]
        while len(found) < len(ranks) and seen >= ranks[len(found)]:
            found.append(steps / STEPS_PER_MS)
    p50, p95, p99 = found
    return LatencyRow(minute, worker, lines, p50, p95, p99, max(counts) / STEPS_PER_MS)


class LatencyProbe(Protocol):
    """What a live flow's match step reports to (`flows/market_sync.py`); a flow gives the
    clock and keeps a recorder per worker (`flows/live.py`)."""

    def handed_over(self, arrivals: Iterable[float]) -> list[LatencyRow]:
        """Lines that arrived at `arrivals` are handed to the sinks now: the rows of a
        minute that ended meanwhile."""
        ...

    def end(self) -> list[LatencyRow]:
        """The input has ended: the open minute's rows."""
        ...
