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

    def due_in(self) -> float:
        """Seconds until the next publication is due (0: due now)."""
        return max(0.0, self.last + self.every_s - time.monotonic())

    def due(self) -> bool:
        return self.due_in() == 0.0

    def publish(self) -> None:
        self.con.execute("CHECKPOINT")
        tmp = self.target.with_name(self.target.name + ".tmp")
        shutil.copyfile(self.source, tmp)
        os.replace(tmp, self.target)
        self.last = time.monotonic()
