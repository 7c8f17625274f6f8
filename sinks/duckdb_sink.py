"""DuckDB sink: batched, idempotent upserts of output rows, plus a published read-only copy.

The flow owns the writer database (`<db>.writer<suffix>`, next to `--db`); readers (the
dashboard, analysts, tests) open the published file at `--db`, which `Publisher` replaces
atomically every `publish_every_s` seconds while rows arrive, and at the end. DuckDB allows
one writer or many readers per file, never both, so nobody ever waits on the flow's lock.
"""

from __future__ import annotations

import contextlib
import operator
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.ladder import LADDER
from operators.rows import TABLE_OF, MarketStatusRow, MatchRow, Reject, Row
from sinks.publish import Publisher
from sinks.tables import Table, schema_sql, tables

# DuckDB imports pandas (when installed) the first time it scans a Python object, which
# stalls the flow's first write for a good part of a second: pay it with this import.
with contextlib.suppress(ImportError):
    import pandas  # noqa: F401

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

# Rows handed to the writer and not committed yet, in batches: the sink's snapshot.
Unsaved = list[dict[type, list[Row]]]


class DuckDBWriter:
    """Buffers rows by type and upserts them in Arrow batches; no Bytewax here.

    The inserts and the publishing run on a writer thread: DuckDB releases the GIL while it
    works, so on a second core they overlap with the flow's Python work. The Python work
    there is kept to building one Arrow column per row field (C loops); deduplicating
    latest-state rows is SQL, so DuckDB does it without the GIL. `flush` hands the
    buffers over (blocking when two batches are already waiting, so memory stays bounded);
    `unsaved` lists what was handed over and is not committed yet, without waiting; `sync`
    waits until everything handed over is committed. A failed write is raised from
    the next call on the flow's side, never lost.
    """

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
        # One thread: DuckDB's work stays on the writer thread, the second core of a small
        # machine; its pool would take CPU from the flow for little gain on these batches.
        self.con.execute("SET threads = 1")
        self.con.execute(schema_sql())
        self.tables = tables()
        self.marks = {
            t.name: HighWaterMarks.load(self.con, t) for t in self.tables.values() if t.rising
        }
        self.batch_rows = batch_rows
        self.flush_every_s = flush_every_s
        self.buffers = _empty_buffers()
        self.pending = 0
        self.last_flush = time.monotonic()
        self.publisher = Publisher(self.con, writer_path(db), db, publish_every_s)
        self.batches: queue.Queue[dict[type, list[Row]] | None] = queue.Queue(maxsize=2)
        # Batches handed over and not committed yet, oldest first: the flow's thread
        # appends, the writer thread drops each once committed.
        self.uncommitted: deque[dict[type, list[Row]]] = deque()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="duckdb-writer", daemon=True)
        self.thread.start()

    def add(self, rows: Sequence[object]) -> None:
        """Buffer rows; other items in the list (wallet messages) are skipped."""
        buffers = self.buffers
        for row in rows:
            buffer = buffers.get(type(row))
            if buffer is not None:
                buffer.append(row)  # type: ignore[arg-type]
        self.pending += len(rows)  # wallet messages count too: only decides when to flush
        if self.pending >= self.batch_rows or (
            time.monotonic() - self.last_flush >= self.flush_every_s
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread (one transaction per batch)."""
        self._raise_failure()
        if self.pending:
            self._hand_over({kind: rows for kind, rows in self.buffers.items() if rows})
        self.buffers = _empty_buffers()
        self.pending = 0
        self.last_flush = time.monotonic()

    def unsaved(self) -> Unsaved:
        """Flush; the batches handed over and not committed yet, oldest first."""
        self.flush()
        return list(self.uncommitted)

    def resend(self, batches: Unsaved) -> None:
        """Hand over again what a snapshot found `unsaved` (a resumed run)."""
        for batch in batches:
            self._hand_over(batch)

    def _hand_over(self, batch: dict[type, list[Row]]) -> None:
        self.uncommitted.append(batch)
        self.batches.put(batch)

    def sync(self) -> None:
        """Flush and wait until every row handed over is committed."""
        self.flush()
        self.batches.join()
        self._raise_failure()

    def close(self) -> None:
        """Commit everything, publish the final copy, stop the thread."""
        self.sync()
        self.batches.put(None)
        self.thread.join()
        self._raise_failure()
        self.publisher.publish()
        self.con.close()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"DuckDB write failed: {self.failure}") from self.failure

    def _run(self) -> None:
        """The writer thread: commit each batch; publish when due, also while no rows come
        (so the last rows of a quiet live feed are published within `publish_every_s`)."""
        dirty = False
        while True:
            got = True
            batch: dict[type, list[Row]] | None = {}
            try:
                batch = self.batches.get(timeout=self.publisher.every_s)
            except queue.Empty:
                got = False  # nothing new: only a publish may be due
            try:
                if batch is None:
                    return
                if batch and self.failure is None:
                    self._commit(batch)
                    self.uncommitted.popleft()
                    dirty = True
                if dirty and self.failure is None and self.publisher.due():
                    self.publisher.publish()
                    dirty = False
            except BaseException as exc:  # handed to the flow's thread
                self.failure = exc
            finally:
                if got:
                    self.batches.task_done()

    def _commit(self, batch: dict[type, list[Row]]) -> None:
        self.con.execute("BEGIN")
        try:
            for kind, rows in batch.items():
                self._write(kind, rows)
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _write(self, kind: type, rows: list[Row]) -> None:
        # The row type has exactly the columns of its own table (tests/test_parse_validate.py).
        own = self.tables[TABLE_OF[kind]]
        _count(kind, rows)
        batch = _arrow(own, rows)
        for name in (own.name, *EXTRA_TABLES.get(kind, ())):
            table = self.tables[name]
            fresh = batch
            marks = self.marks.get(name)
            if marks is not None and marks.marks:
                kept = marks.fresh(rows)
                if len(kept) < len(rows):  # rows written before a restart: skip them
                    fresh = _arrow(own, kept)
            self.con.register("batch", fresh)
            try:
                self.con.execute(_upsert_sql(table, LATEST.get(name, "")))
            finally:
                self.con.unregister("batch")
            STATS.rows[name] += len(fresh)


class HighWaterMarks:
    """The highest `rising` number stored per group of an append-only table when the writer
    opened it: a row at or below it is already in the table (its key rises within the
    group). Only a resumed run meets such rows again; one run never emits a row twice."""

    def __init__(self, table: Table, marks: dict[tuple[object, ...], int]) -> None:
        self.group = operator.attrgetter(*table.group)
        self.rising = operator.attrgetter(table.rising)
        self.marks = marks

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, table: Table) -> HighWaterMarks:
        cols = ", ".join(table.group)
        found = con.sql(f"SELECT {cols}, max({table.rising}) FROM {table.name} GROUP BY ALL")
        marks = {(r[0] if len(r) == 2 else tuple(r[:-1])): r[-1] for r in found.fetchall()}
        return cls(table, marks)

    def fresh(self, rows: list[Row]) -> list[Row]:
        marks, group, rising = self.marks, self.group, self.rising
        if not marks:
            return rows
        return [r for r in rows if rising(r) > marks.get(group(r), -1)]


def _empty_buffers() -> dict[type, list[Row]]:
    return {kind: [] for kind in TABLE_OF}


def _arrow(table: Table, rows: list[Row]) -> pa.Table:
    """Rows of `table`'s own type as Arrow columns, plus `_pos` (the rows' order).

    This runs on the writer thread holding the GIL, so the flow waits meanwhile: one
    `zip(*rows)` transposes all columns in C, half the time of one pass per column."""
    values = zip(*rows, strict=True) if rows else ([] for _ in table.arrow_types)
    columns = [
        _column(column, kind) for column, kind in zip(values, table.arrow_types, strict=True)
    ]
    columns.append(pa.array(np.arange(len(rows), dtype=np.int64)))  # no Python ints
    return pa.Table.from_arrays(columns, names=[*table.columns, "_pos"])


def _column(values: Sequence[object], kind: pa.DataType) -> pa.Array:
    """One column as Arrow. Decimals that are all prices on the ladder (every `prices` row)
    go by their ladder index, a C-level lookup: pyarrow converts a Decimal object in ~0.6 µs,
    with the GIL held, and these are a third of all rows."""
    if pa.types.is_decimal(kind) and values:
        try:
            index = pa.array(list(map(LADDER_INDEX.__getitem__, values)), type=pa.int16())
        except (KeyError, TypeError):  # off the ladder (stakes, balances): one by one
            pass
        else:
            return LADDER_ARROW.take(index).cast(kind)
    return pa.array(values, type=kind)


LADDER_INDEX: dict[object, int] = {price: i for i, price in enumerate(LADDER)}
LADDER_ARROW = pa.array(LADDER, type=pa.decimal128(7, 2))


def _upsert_sql(table: Table, version: str | None) -> str:
    """Insert the local Arrow table `batch` into `table`, idempotently.

    Facts (history, events, rejects) are inserted once and never changed; latest-state
    tables take the incoming row, or only a newer `version` when the table has one. A
    batch may hold several rows of one key there: the newest version wins, then the last.
    """
    cols = ", ".join(table.columns)
    head = f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM batch "
    if not table.key:
        return head  # append-only: the high-water marks already dropped repeated rows
    keys = ", ".join(table.key)
    if version == "":
        return head + f"ON CONFLICT ({keys}) DO NOTHING"
    newest = f"{version} DESC, _pos DESC" if version else "_pos DESC"
    head += f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {newest}) = 1 "
    sets = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
    where = f" WHERE excluded.{version} > {table.name}.{version}" if version else ""
    return head + f"ON CONFLICT ({keys}) DO UPDATE SET {sets}{where}"


def _count(kind: type, rows: list[Row]) -> None:
    if kind is Reject:
        STATS.rejects.update(r.reason.split(":", 1)[0] for r in rows if isinstance(r, Reject))
    elif kind is MatchRow:
        STATS.matches.update(r.match_id for r in rows if isinstance(r, MatchRow))


class _Partition(StatefulSinkPartition[Sequence[object], Unsaved]):
    def __init__(self, writer: DuckDBWriter, resume: Unsaved | None) -> None:
        self.writer = writer
        if resume:
            writer.resend(resume)

    def write_batch(self, values: list[Sequence[object]]) -> None:
        """Called by Bytewax with each batch of per-line row lists."""
        for rows in values:
            self.writer.add(rows)

    def snapshot(self) -> Unsaved:
        """Called at the end of every epoch: the rows received and not committed yet,
        without waiting for DuckDB (waiting stalled a live flow for a whole commit, up to
        300 ms, every epoch). A resumed run writes them first, then what Bytewax emits
        again after the snapshot; upserts and high-water marks absorb whatever was
        committed after all."""
        return self.writer.unsaved()

    def close(self) -> None:
        """Called once when the input is exhausted: final flush and publish."""
        self.writer.close()


class DuckDBSink(FixedPartitionedSink[Sequence[object], Unsaved]):
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

    def build_part(self, step_id: str, for_part: str, resume_state: Unsaved | None) -> _Partition:
        writer = DuckDBWriter(self.db, **self.options)  # type: ignore[arg-type]
        return _Partition(writer, resume_state)
