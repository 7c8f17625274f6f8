"""A progress line on stderr while a flow runs, and the run summary at its end."""

from __future__ import annotations

import sys
import threading
import time

from flows.sources import Progress
from sinks.duckdb_sink import STATS


class ProgressBar:
    """Prints `lines read, lines/s` twice a second, only when stderr is a terminal."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.enabled = sys.stderr.isatty()

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join()
            sys.stderr.write("\r\033[K")

    def _loop(self) -> None:
        last_lines, last_t = 0, self.started
        while not self.stop.wait(self.every_s):
            now, lines = time.monotonic(), Progress.lines
            rate = (lines - last_lines) / max(now - last_t, 1e-9)
            sys.stderr.write(f"\r\033[K  {lines:,} lines read  {rate:,.0f} lines/s")
            sys.stderr.flush()
            last_lines, last_t = lines, now


def member_summary(wall_s: float, process_id: int | None, processes: int) -> str:
    """`summary`, headed by the process's place when it is a member of a cluster, as one
    string: the members of a local cluster share stdout, and one write keeps it whole."""
    if process_id is None:
        return summary(wall_s)
    return f"process {process_id} of {processes}:\n{summary(wall_s, cluster_member=True)}"


def summary(wall_s: float, cluster_member: bool = False) -> str:
    """What this process read and wrote: lines, accepted, rejects by reason, matches, time.
    A member of a cluster reads some lines and writes the rows of others (those of the keys
    its workers hold): it says what it read and what it wrote."""
    lines = Progress.lines
    if cluster_member:
        rejected = sum(STATS.rejects.values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in STATS.rejects.most_common()) or "none"
        return (
            f"lines read   {lines:,} ({lines / max(wall_s, 1e-9):,.0f}/s)\n"
            f"rows written {sum(STATS.rows.values()):,}, of {len(STATS.matches):,} matches\n"
            f"rejects      {rejected:,} written ({reasons})\n"
            f"wall time    {wall_s:.1f} s"
        )
    rejected = sum(STATS.rejects.values())
    reasons = ", ".join(f"{r} {n:,}" for r, n in STATS.rejects.most_common()) or "none"
    return (
        f"lines read   {lines:,} ({lines / max(wall_s, 1e-9):,.0f}/s)\n"
        f"accepted     {lines - rejected:,}\n"
        f"rejected     {rejected:,} ({reasons})\n"
        f"matches      {len(STATS.matches):,}\n"
        f"wall time    {wall_s:.1f} s"
    )
