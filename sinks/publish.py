"""Publishing a read-only copy of the writer's database for readers."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)


class Publisher:
    """Copies the writer's tables into a fresh file and renames it over `target`.

    A background thread publishes at most every `every_s` seconds while `mark_dirty` was
    called since the last copy. It reads through its own cursor, i.e. a consistent snapshot
    of committed rows, while the writer goes on. The rename is atomic: a reader opens
    either the previous complete copy or the new one, never a partial file, and a reader
    holding the old file keeps it until it closes.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        target: Path,
        table_names: list[str],
        every_s: float = 2.0,
    ) -> None:
        self.cursor = con.cursor()
        self.target = target
        self.table_names = table_names
        self.every_s = every_s
        self.dirty = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.count = 0
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._loop, name="duckdb-publisher", daemon=True)
        self.thread.start()

    def mark_dirty(self) -> None:
        self.dirty.set()

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            if self.dirty.is_set():
                self.publish()

    def publish(self) -> None:
        """Copy every table to `<target>.tmp`, then rename it over `target`."""
        with self.lock:
            self.dirty.clear()
            started = time.perf_counter()
            tmp = self.target.with_name(self.target.name + ".tmp")
            tmp.unlink(missing_ok=True)
            self.cursor.execute(f"ATTACH '{tmp}' AS published")
            try:
                for name in self.table_names:
                    self.cursor.execute(f"CREATE TABLE published.{name} AS SELECT * FROM {name}")
            finally:
                self.cursor.execute("DETACH published")
            os.replace(tmp, self.target)
            self.count += 1
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Stop the thread and publish the final state."""
        self.stop.set()
        self.thread.join()
        self.publish()
        self.cursor.close()
