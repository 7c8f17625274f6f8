"""Publishing a read-only copy of the writer's database for readers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb


class Publisher:
    """Checkpoints the writer's database and copies the file over `target`, atomically.

    Called by the writer between two flushes, so no write runs during the copy; after the
    checkpoint the file holds every committed row and no WAL, so the copy is a complete
    database. The rename is atomic: a reader opens either the previous copy or the new one,
    never a partial file, and a reader that has the old copy open keeps it until it closes.
    A byte copy costs a fraction of re-inserting every table, and needs no second thread.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, source: Path, target: Path, every_s: float = 2.0
    ) -> None:
        self.con = con
        self.source = source
        self.target = target
        self.every_s = every_s
        self.last = float("-inf")
        self.count = 0
        self.seconds = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def publish(self) -> None:
        started = time.perf_counter()
        self.con.execute("CHECKPOINT")
        tmp = self.target.with_name(self.target.name + ".tmp")
        shutil.copyfile(self.source, tmp)
        os.replace(tmp, self.target)
        self.last = time.monotonic()
        self.count += 1
        self.seconds += time.perf_counter() - started
