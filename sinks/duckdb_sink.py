"""DuckDB sink: every worker writes its own rows, in batches, idempotently; readers open one
published DuckDB file that shows every worker's rows.

Each worker has a writer process of its own (`sinks/duckdb_store.py`) that stores its rows
as Parquet segments next to `--db`; the published file at `--db` holds views over every
worker's segments and is replaced atomically every `publish_every_s` seconds while rows
arrive, and at the end. Readers (the dashboard, analysts, tests) never meet a writer's lock.
"""

from __future__ import annotations

import contextlib
import math
import operator
import queue
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import msgspec
from bytewax.outputs import StatefulSinkPartition

from flows.bytewax_compat import PerWorkerSink, this_worker
from operators.rows import TABLE_OF, BetRow, FeedEventRow, MarketStatusRow, MatchRow, Reject, Row
from sinks.duckdb_store import Encoded, Marks, data_dir, start_store
from sinks.stats import Seconds
from sinks.tables import Table, tables

__all__ = ["STATS", "DuckDBSink", "DuckDBWriter", "data_dir"]

# Row types that feed more than their own table.
EXTRA_TABLES: dict[type, tuple[str, ...]] = {MarketStatusRow: ("market_history",)}


@dataclass
class SinkStats:
    """What the sinks of this process committed (this run's rows, not those a resumed run
    sent again), counted per committed chunk by the writers' sending threads, off the
    flow's thread: rows per table, rejects per reason, feed events per type, the latest
    status of each market, suspensions per reason, bet verdicts and settlements, and how
    long each commit took."""

    rows: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    matches: set[str] = field(default_factory=set)
    events: Counter[str] = field(default_factory=Counter)  # feed events by type
    markets: dict[tuple[str, str], str] = field(default_factory=dict)  # -> latest status
    suspensions: Counter[str] = field(default_factory=Counter)  # by reason
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, reason)
    settlements: Counter[str] = field(default_factory=Counter)  # by status: won, lost, void
    commits: Seconds = field(default_factory=Seconds)


STATS = SinkStats()

# Rows handed to the writer and not committed yet, in chunks: the sink's snapshot.
Chunk = dict[type, list[Row]]
Unsaved = list[Chunk]
_SYNC = object()  # queued by `sync`: commit what was sent, then mark the item done
_DUE = object()  # (the sending thread's own: the commit interval passed)


class DuckDBWriter:
    """Buffers rows by type and has them written in batches; no Bytewax here.

    Two helpers do the writing, so that the flow's thread only appends rows: a thread that
    encodes each chunk of rows as MessagePack (in C, quick, holding the interpreter lock)
    and sends it to the writer process (`sinks/duckdb_store.py`), which turns it into
    Arrow columns and Parquet segments, and publishes, with an interpreter lock of its own
    (building the Arrow columns here held the flow's lock far longer: figures in
    docs/performance.md).

    `flush` hands the buffered rows over as a chunk, every `flush_every_s` or `batch_rows`
    rows; the sending thread has the writer commit every `commit_every_s` (0: each chunk
    at once), all chunks since the last commit in one transaction. Small chunks keep each
    conversion short, so a live flow's thread never waits long for the lock; rare commits
    keep DuckDB's fixed cost per table and commit low. The queue holds the chunks of two
    commit intervals and two more (a commit may outlast its interval on a busy machine);
    `flush` blocks when it is full, so memory stays bounded. `unsaved` lists what was
    handed over and is not committed yet, without waiting; `sync` waits until everything
    handed over is committed. A failed write is raised from the next call on the flow's
    side, never lost.
    """

    def __init__(
        self,
        db: Path,
        worker: int = 0,
        batch_rows: int = 50_000,
        flush_every_s: float = 0.5,
        commit_every_s: float = 0.0,
        publish_every_s: float = 2.0,
        lock_wait_s: float = 10.0,
    ) -> None:
        self.tables = tables()
        self.marks: dict[str, HighWaterMarks] = {}
        self.batch_rows = batch_rows
        self.flush_every_s = flush_every_s
        self.commit_every_s = commit_every_s
        self.buffers = _empty_buffers()
        self.pending = 0
        self.last_flush = time.monotonic()
        room = 2 + math.ceil(2 * commit_every_s / flush_every_s) if flush_every_s > 0 else 2
        self.chunks: queue.Queue[Chunk | object | None] = queue.Queue(maxsize=room)
        # Chunks handed over and not committed yet, oldest first: the flow's thread
        # appends, the sending thread drops them once committed.
        self.uncommitted: deque[Chunk] = deque()
        # Chunks a resumed run hands over again (by id, while uncommitted): rows of lines
        # an earlier run read, which `STATS` (this run's summary) leaves out.
        self.resent: set[int] = set()
        self.failure: BaseException | None = None
        self.pipe, self.process = start_store(db, worker, publish_every_s, lock_wait_s)
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
        """Hand the buffered rows to the writer as a chunk."""
        self._raise_failure()
        if self.pending:
            self._hand_over({kind: rows for kind, rows in self.buffers.items() if rows})
        self.buffers = _empty_buffers()
        self.pending = 0
        self.last_flush = time.monotonic()

    def unsaved(self) -> Unsaved:
        """Flush; the chunks handed over and not committed yet, oldest first."""
        self.flush()
        return list(self.uncommitted)

    def resend(self, chunks: Unsaved) -> None:
        """Hand over again what a snapshot found `unsaved` (a resumed run)."""
        for chunk in chunks:
            self.resent.add(id(chunk))
            self._hand_over(chunk)

    def _hand_over(self, chunk: Chunk) -> None:
        self.uncommitted.append(chunk)
        self.chunks.put(chunk)

    def sync(self) -> None:
        """Flush and wait until every row handed over is committed."""
        self.flush()
        self.chunks.put(_SYNC)
        self.chunks.join()
        self._raise_failure()

    def close(self) -> None:
        """Commit everything, publish the final copy, stop the thread and the process."""
        self.sync()
        self.chunks.put(None)
        self.thread.join()
        self.pipe.close()
        self.process.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"DuckDB write failed: {self.failure}") from self.failure

    def _run(self) -> None:
        """The sending thread: wait for the writer process, then send it each chunk as
        Arrow, and a commit once the oldest chunk not committed is `commit_every_s` old
        (at once on `sync`, and before closing)."""
        try:
            marks = cast(Marks, self._answer("ready")[1])
            self.marks = {name: HighWaterMarks(self.tables[name], m) for name, m in marks.items()}
        except BaseException as exc:
            self.failure = exc
        sent: list[tuple[Chunk, Counter[str]]] = []  # since the last commit
        due = 0.0  # when they must be committed
        while True:
            try:
                item = self.chunks.get(timeout=max(0.0, due - time.monotonic()) if sent else None)
            except queue.Empty:
                item = _DUE  # no chunk came before the commit fell due
            try:
                if self.failure is None and isinstance(item, dict):
                    encoded, written = self._encode(item)
                    self._send(("rows", encoded))
                    if not sent:
                        due = time.monotonic() + self.commit_every_s
                    sent.append((item, written))
                commit = not isinstance(item, dict) or time.monotonic() >= due
                if self.failure is None and sent and commit:
                    self._commit(sent)
                    sent = []
                if item is None:
                    if self.failure is None:
                        self._send(None)
                        self._answer("closed")
                    return
            except BaseException as exc:  # handed to the flow's thread
                self.failure = exc
                sent = []  # never to be committed: no commit falls due (no waking to spin)
            finally:
                if item is not _DUE:
                    self.chunks.task_done()

    def _commit(self, sent: list[tuple[Chunk, Counter[str]]]) -> None:
        started = time.monotonic()
        self._send(("commit",))
        self._answer("committed")
        STATS.commits.observe(time.monotonic() - started)
        for chunk, written in sent:
            self.uncommitted.popleft()
            if id(chunk) in self.resent:
                self.resent.discard(id(chunk))
            else:
                _count(chunk, written)

    def _send(self, message: tuple[str, Encoded] | tuple[str] | None) -> None:
        try:
            self.pipe.send(message)
        except OSError:  # its end is closed
            raise self._ended() from None

    def _answer(self, expected: str) -> tuple[object, ...]:
        try:
            answer: tuple[object, ...] = self.pipe.recv()
        except (EOFError, OSError):
            raise self._ended() from None
        if answer[0] == "failed":
            raise RuntimeError(answer[1])
        assert answer[0] == expected, answer
        return answer

    def _ended(self) -> RuntimeError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return RuntimeError(f"the writer process ended (exit code {self.process.returncode})")

    def _encode(self, chunk: Chunk) -> tuple[Encoded, Counter[str]]:
        """A chunk as MessagePack, per table (with the table of its rows' type), and the
        rows each table gets."""
        out: Encoded = []
        written: Counter[str] = Counter()
        for kind, rows in chunk.items():
            # The row type has exactly the columns of its own table (test_parse_validate.py).
            own = TABLE_OF[kind]
            encoded = _encoder.encode(rows)
            for name in (own, *EXTRA_TABLES.get(kind, ())):
                fresh, data = rows, encoded
                marks = self.marks.get(name)
                if marks is not None and marks.marks:
                    kept = marks.fresh(rows)
                    if len(kept) < len(rows):  # rows written before a restart: skip them
                        fresh, data = kept, _encoder.encode(kept)
                out.append((name, own, data))
                written[name] += len(fresh)
        return out, written


class HighWaterMarks:
    """The highest `rising` number stored per group of an append-only table when the writer
    opened it: a row at or below it is already in the table (its key rises within the
    group). Only a resumed run meets such rows again; one run never emits a row twice."""

    def __init__(self, table: Table, marks: dict[object, int]) -> None:
        self.group = operator.attrgetter(*table.group)
        self.rising = operator.attrgetter(table.rising)
        self.marks = marks

    def fresh(self, rows: list[Row]) -> list[Row]:
        marks, group, rising = self.marks, self.group, self.rising
        if not marks:
            return rows
        return [r for r in rows if rising(r) > marks.get(group(r), -1)]


def _empty_buffers() -> dict[type, list[Row]]:
    return {kind: [] for kind in TABLE_OF}


# Rows as MessagePack arrays, decimals as their exact text (`sinks.duckdb_store.to_arrow`).
_encoder = msgspec.msgpack.Encoder(decimal_format="string")


def _count(chunk: Chunk, written: Counter[str]) -> None:
    """Add a committed chunk of this run's rows to `STATS`."""
    STATS.rows.update(written)
    rejects = cast(list[Reject], chunk.get(Reject, []))
    STATS.rejects.update(r.reason.split(":", 1)[0] for r in rejects)
    STATS.matches.update(r.match_id for r in cast(list[MatchRow], chunk.get(MatchRow, [])))
    STATS.events.update(r.type for r in cast(list[FeedEventRow], chunk.get(FeedEventRow, [])))
    markets = STATS.markets
    for m in cast(list[MarketStatusRow], chunk.get(MarketStatusRow, [])):
        key = (m.match_id, m.market)
        if m.status == "SUSPENDED" and markets.get(key) != "SUSPENDED":
            STATS.suspensions[m.reason.split(":", 1)[0]] += 1
        markets[key] = m.status
    for b in cast(list[BetRow], chunk.get(BetRow, [])):
        if b.version == 1:
            STATS.verdicts[b.status, b.reason.split(":", 1)[0]] += 1
        else:
            STATS.settlements[b.status] += 1


class _Writers:
    """This process's writers, one per worker, shared by the worker's partitions (its own,
    and those of workers a resumed run lost); each closes with its last partition."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, tuple[DuckDBWriter, int]] = {}  # worker -> (writer, users)

    def take(self, worker: int, start: Callable[[], DuckDBWriter]) -> DuckDBWriter:
        with self.lock:
            writer, users = self.open.get(worker) or (start(), 0)
            self.open[worker] = (writer, users + 1)
            return writer

    def give_back(self, worker: int) -> None:
        with self.lock:
            writer, users = self.open[worker]
            if users > 1:
                self.open[worker] = (writer, users - 1)
                return
            del self.open[worker]
        writer.close()


_WRITERS = _Writers()


class _Partition(StatefulSinkPartition[Sequence[object], Unsaved]):
    """One worker's partition, or one a resumed run took over from a worker it lost: its
    snapshot was the rows it had not committed, which go to this worker's writer."""

    def __init__(
        self, worker: int, own: bool, writer: DuckDBWriter, resume: Unsaved | None
    ) -> None:
        self.worker = worker
        self.own = own
        self.writer = writer
        self.handed: list[Chunk] = list(resume or ())
        if resume:
            writer.resend(resume)

    def write_batch(self, values: list[Sequence[object]]) -> None:
        """Called by Bytewax with each batch of per-line row lists (a worker's own
        partition only)."""
        for rows in values:
            self.writer.add(rows)

    def snapshot(self) -> Unsaved:
        """Called at the end of every epoch: the rows received and not committed yet,
        without waiting for DuckDB (waiting stalled a live flow for a whole commit every
        epoch). A resumed run writes them first, then what Bytewax emits
        again after the snapshot; the views and high-water marks absorb whatever was
        committed after all. A lost worker's partition keeps only what it handed over."""
        unsaved = self.writer.unsaved()
        if self.own:
            return unsaved
        handed = {id(chunk) for chunk in self.handed}
        self.handed = [chunk for chunk in unsaved if id(chunk) in handed]
        return self.handed

    def close(self) -> None:
        """Called once when the input is exhausted: the last partition of the worker to
        close has its writer commit and publish."""
        _WRITERS.give_back(self.worker)


class DuckDBSink(PerWorkerSink[Sequence[object], Unsaved]):
    """One partition per worker, each written by its worker (`PerWorkerSink`): rows never
    change worker to be written.

    In: `(key, [Row, ...])` from `market_sync`.
    """

    def __init__(self, db: Path, **writer_options: float) -> None:
        self.db = db
        self.options = writer_options

    def build_worker_part(self, index: int, resume_state: Unsaved | None) -> _Partition:
        worker = this_worker()[0]

        def start() -> DuckDBWriter:
            return DuckDBWriter(self.db, worker, **self.options)  # type: ignore[arg-type]

        return _Partition(worker, index == worker, _WRITERS.take(worker, start), resume_state)
