"""DuckDB sink: batched, idempotent upserts of output rows, plus a published read-only copy.

The flow owns the writer database (`<db>.writer<suffix>`, next to `--db`); readers (the
dashboard, analysts, tests) open the published file at `--db`, which `Publisher` replaces
atomically every `publish_every_s` seconds while rows arrive, and at the end. DuckDB allows
one writer or many readers per file, never both, so nobody ever waits on the flow's lock.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.rows import TABLE_OF, MarketStatusRow, MatchRow, Reject, Row
from sinks.publish import Publisher
from sinks.tables import Table, schema_sql, tables

log = logging.getLogger(__name__)

# Row types that feed more than their own table.
EXTRA_TABLES: dict[type, tuple[str, ...]] = {MarketStatusRow: ("market_history",)}
# Tables that hold the latest state per key: the newest `version` wins (None: the last row).
LATEST: dict[str, str | None] = {
    "matches": None,
    "market_status": "version",
    "bets": "version",
    "wallets": "version",
}


def writer_path(db: Path) -> Path:
    """Where the flow keeps its own read-write database for the published file `db`."""
    return db.with_name(f"{db.stem}.writer{db.suffix or '.duckdb'}")


@dataclass
class SinkStats:
    """What a sink wrote in this process: rows per table and rejects per reason."""

    rows: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    matches: set[str] = field(default_factory=set)


STATS = SinkStats()


class DuckDBWriter:
    """Buffers rows by type and upserts them in Arrow batches; no Bytewax here."""

    def __init__(
        self,
        db: Path,
        batch_rows: int = 50_000,
        flush_every_s: float = 0.5,
        publish_every_s: float = 2.0,
    ) -> None:
        db.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(writer_path(db)))
        self.con.execute("SET checkpoint_threshold = '1GB'")  # we checkpoint when publishing
        self.con.execute(schema_sql())
        self.tables = tables()
        self.batch_rows = batch_rows
        self.flush_every_s = flush_every_s
        self.buffers: dict[type, list[Row]] = defaultdict(list)
        self.pending = 0
        self.last_flush = time.monotonic()
        self.publisher = Publisher(self.con, writer_path(db), db, publish_every_s)
        self.dirty = False

    def add(self, rows: Sequence[object]) -> None:
        """Buffer a line's rows; other items in the list (wallet messages) are skipped."""
        for row in rows:
            kind = type(row)
            if kind in TABLE_OF:
                self.buffers[kind].append(row)  # type: ignore[arg-type]
                self.pending += 1
        if self.pending >= self.batch_rows or (
            time.monotonic() - self.last_flush >= self.flush_every_s
        ):
            self.flush()

    def flush(self) -> None:
        """Write every buffered row in one transaction, then publish if it is time."""
        try:
            if self.pending:
                self.con.execute("BEGIN")
                for kind, rows in self.buffers.items():
                    self._write(kind, rows)
                self.con.execute("COMMIT")
                self.dirty = True
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self.buffers.clear()
            self.pending = 0
            self.last_flush = time.monotonic()
        if self.dirty and self.publisher.due():
            self.publish()

    def publish(self) -> None:
        self.publisher.publish()
        self.dirty = False

    def _write(self, kind: type, rows: list[Row]) -> None:
        # The row type has exactly the columns of its own table (tests/test_parse_validate.py).
        schema = self.tables[TABLE_OF[kind]].polars_schema
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        _count(kind, rows)
        for name in (TABLE_OF[kind], *EXTRA_TABLES.get(kind, ())):
            table = self.tables[name]
            batch = frame.select(table.columns)
            if name in LATEST:
                batch = _latest(batch, table, LATEST[name])
            self.con.register("batch", batch)
            try:
                self.con.execute(_upsert_sql(table, LATEST.get(name, "")))
            finally:
                self.con.unregister("batch")
            STATS.rows[name] += len(rows)

    def close(self) -> None:
        self.flush()
        self.publish()
        self.con.close()


def _latest(batch: pl.DataFrame, table: Table, version: str | None) -> pl.DataFrame:
    if version is not None:
        batch = batch.sort(version)
    return batch.unique(subset=list(table.key), keep="last", maintain_order=True)


def _upsert_sql(table: Table, version: str | None) -> str:
    """Insert the local frame `batch` into `table`, idempotently.

    Facts (history, events, rejects) are inserted once and never changed; latest-state
    tables take the incoming row, or only a newer `version` when the table has one.
    """
    cols = ", ".join(table.columns)
    head = f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM batch "
    keys = ", ".join(table.key)
    if version == "":
        return head + f"ON CONFLICT ({keys}) DO NOTHING"
    sets = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
    where = f" WHERE excluded.{version} > {table.name}.{version}" if version else ""
    return head + f"ON CONFLICT ({keys}) DO UPDATE SET {sets}{where}"


def _count(kind: type, rows: list[Row]) -> None:
    if kind is Reject:
        STATS.rejects.update(r.reason.split(":", 1)[0] for r in rows if isinstance(r, Reject))
    elif kind is MatchRow:
        STATS.matches.update(r.match_id for r in rows if isinstance(r, MatchRow))


class _Partition(StatefulSinkPartition[Sequence[object], None]):
    def __init__(self, writer: DuckDBWriter) -> None:
        self.writer = writer

    def write_batch(self, values: list[Sequence[object]]) -> None:
        """Called by Bytewax with each batch of per-line row lists."""
        for rows in values:
            self.writer.add(rows)

    def snapshot(self) -> None:
        """Called at the end of every epoch: flush, so a snapshot never runs ahead of DuckDB."""
        self.writer.flush()

    def close(self) -> None:
        """Called once when the input is exhausted: final flush and publish."""
        self.writer.close()


class DuckDBSink(FixedPartitionedSink[Sequence[object], None]):
    """One partition, so exactly one worker (in one process) holds the writer connection.

    In: `(key, [Row, ...])` from `market_sync`.
    """

    def __init__(self, db: Path, **writer_options: float) -> None:
        self.db = db
        self.options = writer_options

    def list_parts(self) -> list[str]:
        return ["duckdb"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(DuckDBWriter(self.db, **self.options))  # type: ignore[arg-type]
