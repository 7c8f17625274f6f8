"""A worker's writer process: its rows as Parquet segments, and the published DuckDB file.

Every worker of a flow has one (`DuckDBWriter`, `sinks/duckdb_sink.py`, starts `serve` in a
process of its own and sends it Arrow batches), so no row changes worker on its way out and
DuckDB's one-writer-per-file rule never meets a second worker. For `--db out/x.duckdb`:

- `out/x.data/<table>/w0003-<seq>.parquet`: worker 3's committed rows of a table, one
  segment per commit, each with `_commit` (when, in ns, rising) and `_pos` (the rows' order).
- `out/x.data/w0003.json`: worker 3's manifest, its live segments. A commit writes the
  segments, then replaces the manifest (atomically): rows are committed once listed there.
  Every `FANOUT` segments of one size are merged into one of the next (`_compact`), so a
  long run keeps a few segments per level; merged ones are deleted `RETAIN_S` later.
- `out/x.duckdb`: the published file readers open. It holds views, one per table of
  schema.sql, over the segments every manifest lists: append-only tables as they are;
  tables that keep the latest state per key take the newest `version`, then the last row
  (`rejects`, `feed_gaps`: the first). It is rebuilt and replaced atomically under a lock
  of the folder (`publish`), by a writer whose commit is `publish_every_s` old and not
  listed yet (`published.json` says which manifests the file lists), and by every writer
  at its end whose last commit is not listed yet, so the last one to end lists them all.

The views name the segments by absolute path: keep `x.duckdb` with its `x.data` folder.

The conversation over the pipe, flow -> store: `(db, worker, publish_every_s, lock_wait_s)`
once, then chunks of rows `("rows", [(table, table of the rows' type, MessagePack), ...])`
(rows as arrays in their table's column order, decimals as text) and, now and then,
`("commit",)` to commit every chunk since the last one together; None to close. Store ->
flow: `("ready", marks)` once, then `("committed",)` per commit, `("closed",)` at the end, or
`("failed", cause)` at any time, after which it takes nothing. No Bytewax and no row types
here, only tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sinks.tables import Table, schema_sql, tables, views_sql

# Tables that hold the latest state per key: the row of the newest `version` wins ("": the
# first row). A match row has no version: its event `ts` serves, as in the `matches` topic
# (the last row would not do: rows a resumed run hands over again from its snapshot are
# committed by whichever worker takes over, maybe after newer rows of the key).
LATEST: dict[str, str] = {
    "matches": "ts",
    "tennis_scores": "version",
    "market_status": "version",
    "bets": "version",
    "wallets": "version",
    "rejects": "",
    "feed_gaps": "",
    # A run writes a (minute, worker) row once; the same row again comes from a resumed
    # run's snapshot. Two rows differ only when a restart falls within one minute: the
    # first run's part of that minute is kept.
    "latency": "",
}
FANOUT = 8  # segments of one level merged into one of the next
RETAIN_S = 60.0  # a merged segment stays this long for readers of an older published file

# Per append-only table, per group: the highest `rising` number stored (see HighWaterMarks).
Marks = dict[str, dict[object, int]]
Batch = list[tuple[str, pa.Table]]
Encoded = list[tuple[str, str, bytes]]  # (table, table of the rows' type, MessagePack rows)

_decoder = msgspec.msgpack.Decoder()


def to_arrow(table: Table, encoded: bytes) -> pa.Table:
    """MessagePack rows of `table`'s columns as Arrow, plus `_pos` (their order). Decimals
    come as text and are cast in C, exactly (a value with more places than the column's
    scale is an error, never rounded)."""
    rows = _decoder.decode(encoded)
    values = zip(*rows, strict=True) if rows else ([] for _ in table.arrow_types)
    columns = [
        pa.array(column, pa.string()).cast(kind)
        if pa.types.is_decimal(kind)
        else pa.array(column, type=kind)
        for column, kind in zip(values, table.arrow_types, strict=True)
    ]
    columns.append(pa.array(np.arange(len(rows), dtype=np.int64)))
    return pa.Table.from_arrays(columns, names=[*table.columns, "_pos"])


def data_dir(db: Path) -> Path:
    """The folder of the segments behind the published file `db`."""
    return db.with_name(f"{db.stem}.data")


def worker_name(worker: int) -> str:
    return f"w{worker:04d}"


@dataclass
class Manifest:
    """One worker's live segments per table (name, level), the next segment number, and
    the merged-away segments with when they were retired."""

    seq: int = 0
    live: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    retired: list[tuple[str, float]] = field(default_factory=list)

    @staticmethod
    def load(path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return Manifest()
        return Manifest(
            data["seq"],
            {t: [(n, lv) for n, lv in segs] for t, segs in data["live"].items()},
            [(n, at) for n, at in data["retired"]],
        )

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        data = {"seq": self.seq, "live": self.live, "retired": self.retired}
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def live_segments(folder: Path) -> dict[str, list[Path]]:
    """Every worker's live segments per table, oldest first within a worker."""
    found: dict[str, list[Path]] = {}
    for manifest in sorted(folder.glob("w*.json")):
        for name, segments in Manifest.load(manifest).live.items():
            found.setdefault(name, []).extend(folder / name / seg for seg, _ in segments)
    return found


class Store:
    """One worker's segments and manifest; publication of the views file."""

    def __init__(self, db: Path, worker: int, publish_every_s: float, lock_wait_s: float) -> None:
        self.db = db.resolve()
        self.folder = data_dir(self.db)
        self.name = worker_name(worker)
        self.publish_every_s = publish_every_s
        self.dirty = False  # committed since this writer's rows were last published
        self.tables = tables()
        for name in self.tables:
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        self.lock = _lock(self.folder / f"{self.name}.lock", lock_wait_s, db, worker)
        self.manifest_path = self.folder / f"{self.name}.json"
        self.manifest = Manifest.load(self.manifest_path)
        self._clean()
        self.last_commit = 0
        self.last_publish = float("-inf")

    def marks(self) -> Marks:
        """The high-water marks of every append-only table over every worker's segments
        (a resumed run may give a worker another's keys), for the flow's side to skip rows
        written before a restart (their key rises within the group)."""
        found: Marks = {}
        segments = live_segments(self.folder)
        con = duckdb.connect()
        try:
            for table in self.tables.values():
                files = segments.get(table.name)
                if table.rising and files:
                    cols = ", ".join(table.group)
                    rows = con.sql(
                        f"SELECT {cols}, max({table.rising}) FROM read_parquet({_list(files)}) "
                        "GROUP BY ALL"
                    ).fetchall()
                    found[table.name] = {
                        (r[0] if len(r) == 2 else tuple(r[:-1])): r[-1] for r in rows
                    }
        finally:
            con.close()
        return found

    def arrow(self, encoded: Encoded) -> Batch:
        """A chunk from the flow as Arrow, per table (rows sent for two tables, converted
        once: pickling keeps the one bytes object)."""
        converted: dict[int, pa.Table] = {}
        out: Batch = []
        for name, own, data in encoded:
            arrow = converted.get(id(data))
            if arrow is None:
                arrow = converted[id(data)] = to_arrow(self.tables[own], data)
            out.append((name, arrow))
        return out

    def commit(self, chunks: list[Batch]) -> None:
        """Write `chunks` as one segment per table, then list them in the manifest."""
        stamp = self.last_commit = max(time.time_ns(), self.last_commit + 1)
        for name, arrow in _by_table(chunks):
            if len(arrow) == 0:
                continue
            commit = pa.array(np.full(len(arrow), stamp, dtype=np.int64))
            self._add(name, arrow.append_column("_commit", commit), 0)
        for name in list(self.manifest.live):
            self._compact(name)
        self._forget_retired()
        self.manifest.save(self.manifest_path)
        self.dirty = True

    def _add(self, table: str, arrow: pa.Table, level: int) -> None:
        seg = f"{self.name}-{self.manifest.seq:08d}.parquet"
        self.manifest.seq += 1
        path = self.folder / table / seg
        tmp = path.with_name(seg + ".tmp")
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
        self.manifest.live.setdefault(table, []).append((seg, level))

    def _compact(self, table: str) -> None:
        """Merge `FANOUT` segments of one level into one of the next, as often as it takes:
        a table of n segments' rows is rewritten about log(n) times in all."""
        while True:
            live = self.manifest.live[table]
            levels = [level for _, level in live]
            full = next((lv for lv in sorted(set(levels)) if levels.count(lv) >= FANOUT), None)
            if full is None:
                return
            merged = [seg for seg, level in live if level == full]
            arrow = pa.concat_tables(pq.read_table(self.folder / table / s) for s in merged)
            self.manifest.live[table] = [(s, lv) for s, lv in live if lv != full]
            self._add(table, arrow, full + 1)
            now = time.time()
            self.manifest.retired.extend((f"{table}/{s}", now) for s in merged)

    def _forget_retired(self, older_than_s: float = RETAIN_S) -> None:
        now, kept = time.time(), []
        for rel, at in self.manifest.retired:
            if now - at >= older_than_s:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / rel).unlink()
            else:
                kept.append((rel, at))
        self.manifest.retired = kept

    def _clean(self) -> None:
        """Delete this worker's segments no manifest lists (a killed commit's), and those
        retired long enough."""
        listed = {(t, s) for t, segs in self.manifest.live.items() for s, _ in segs}
        listed |= {(rel.split("/")[0], rel.split("/")[-1]) for rel, _ in self.manifest.retired}
        for name in self.tables:
            for path in (self.folder / name).glob(f"{self.name}-*"):
                if (name, path.name) not in listed:
                    path.unlink()
        self._forget_retired()

    def due_in(self) -> float | None:
        """Seconds until this writer's committed rows are due to be published (None: none
        are waiting)."""
        if not self.dirty:
            return None
        return max(0.0, self.last_publish + self.publish_every_s - time.monotonic())

    def publish(self, unless_published: bool = False) -> None:
        """Rebuild the views file over every worker's live segments and put it in place of
        the published one, atomically; under the folder's lock, so publications never
        overtake each other. `unless_published`: not when another writer's publication
        already listed this writer's manifest as it is (so the writers of a cluster publish
        about once per interval between them, whichever of them is busy)."""
        self.last_publish = time.monotonic()
        self.dirty = False
        with _locked(self.folder / "publish.lock"):
            listed = self.folder / "published.json"  # the manifests the published file lists
            state = {p.stem: p.stat().st_mtime_ns for p in self.folder.glob("w*.json")}
            mine = state.get(self.name)
            if unless_published and self.db.exists() and _read_json(listed).get(self.name) == mine:
                return
            tmp = self.db.with_name(f"{self.db.name}.{self.name}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            con = duckdb.connect(str(tmp))
            try:
                segments = live_segments(self.folder)
                for table in self.tables.values():
                    con.execute(_view_sql(table, segments.get(table.name, [])))
                con.execute(views_sql())
            finally:
                con.close()
            os.replace(tmp, self.db)
            listed.write_text(json.dumps(state))

    def close(self) -> None:
        """Publish this writer's last rows, unless a publication since its last commit lists
        them already: the writers of a cluster end together, and one publication then
        serves all that had committed before it (16 in a row took seconds)."""
        self.publish(unless_published=True)
        self.lock.close()


def export(published: Path, target: Path) -> dict[str, int]:
    """A self-contained copy of the published file: every table's rows as a table of its own
    (schema.sql's types and keys) in a new DuckDB file `target`, written aside and renamed
    into place; the rows per table."""
    tmp = target.with_name(target.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(schema_sql())
        con.execute(f"ATTACH '{_quote(published)}' AS published (READ_ONLY)")
        counts = {}
        for name in tables():
            con.execute(f"INSERT INTO {name} SELECT * FROM published.{name}")
            counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        con.execute("DETACH published")
    finally:
        con.close()
    os.replace(tmp, target)
    return counts


def _read_json(path: Path) -> dict[str, object]:
    """A small JSON object file; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _view_sql(table: Table, files: list[Path]) -> str:
    cols = ", ".join(table.columns)
    if not files:
        typed = zip(table.columns, table.sql_types, strict=True)
        empty = ", ".join(f"NULL::{t} AS {c}" for c, t in typed)
        return f"CREATE VIEW {table.name} AS SELECT {empty} LIMIT 0"
    body = f"SELECT {cols} FROM read_parquet({_list(files)})"
    latest = LATEST.get(table.name)
    if latest is not None and table.key:
        keys = ", ".join(table.key)
        order = f"{latest} DESC, _commit DESC, _pos DESC" if latest else "_commit, _pos"
        body += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
    return f"CREATE VIEW {table.name} AS {body}"


def _list(files: list[Path]) -> str:
    return "[" + ", ".join(f"'{_quote(f)}'" for f in files) + "]"


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _by_table(chunks: list[Batch]) -> Batch:
    """One Arrow table per table name from several chunks, rows in order, `_pos` counting
    through all of them (each chunk's counts from 0)."""
    parts: dict[str, list[pa.Table]] = {}
    for chunk in chunks:
        for name, arrow in chunk:
            parts.setdefault(name, []).append(arrow)
    out: Batch = []
    for name, arrows in parts.items():
        if len(arrows) == 1:
            out.append((name, arrows[0]))
            continue
        merged = pa.concat_tables(arrows)
        pos = merged.schema.get_field_index("_pos")
        order = pa.array(np.arange(len(merged), dtype=np.int64))
        out.append((name, merged.set_column(pos, "_pos", order)))
    return out


def _lock(path: Path, wait_s: float, db: Path, worker: int) -> IO[bytes]:
    """This worker's lock of the folder, for the writer's life. A writer whose flow just
    died ends at its next read of the pipe, so it may hold it for the rest of a commit: a
    restarted flow waits up to `wait_s` for it before giving up."""
    f = path.open("ab")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                raise RuntimeError(
                    f"another flow is writing {db} (worker {worker} of it holds {path})"
                ) from None
            time.sleep(0.1)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start_store(
    db: Path, worker: int, publish_every_s: float, lock_wait_s: float
) -> tuple[Connection, subprocess.Popen[bytes]]:
    """Start `serve` in a fresh interpreter: our end of its pipe, and the process.

    A plain `python -m` rather than multiprocessing: its spawn would run the flow's
    `__main__` again in the child (a user's script without a main guard starts its flow
    twice), and fork is unsafe with the threads of Bytewax and librdkafka. The process
    ends when the flow closes it, or, if the flow dies, when our end of the pipe closes."""
    ours, theirs = socket.socketpair()
    root = str(Path(__file__).resolve().parents[1])  # where `sinks` is importable from
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-m", "sinks.duckdb_store", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )
    pipe = Connection(ours.detach())
    pipe.send((db, worker, publish_every_s, lock_wait_s))
    return pipe, process


def serve(conn: Connection) -> None:
    """The writer process: keep the chunks that come, commit them when asked; publish when
    due, while nothing comes too (so the last rows of a quiet live feed are published
    within `publish_every_s`). Signals are the flow's business: a Ctrl-C or
    SIGTERM sent to the whole process group must not kill the writer before the flow's final
    commit; it ends when the flow says so, or when the flow's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        db, worker, publish_every_s, lock_wait_s = conn.recv()
        store = Store(db, worker, publish_every_s, lock_wait_s)
        conn.send(("ready", store.marks()))
    except Exception as exc:
        _tell_failed(conn, exc)
        return
    chunks: list[Batch] = []  # received, not committed yet
    try:
        while True:
            if conn.poll(store.due_in()):
                message = conn.recv()
                if message is None:
                    store.close()
                    conn.send(("closed",))
                    return
                if message[0] == "rows":
                    chunks.append(store.arrow(message[1]))
                else:  # "commit"
                    store.commit(chunks)
                    chunks = []
                    conn.send(("committed",))
            if store.due_in() == 0.0:
                store.publish(unless_published=True)
    except EOFError:
        return  # the flow is gone: nobody to answer
    except Exception as exc:
        _tell_failed(conn, exc)


def _tell_failed(conn: Connection, exc: Exception) -> None:
    """Send the flow the cause; a flow killed meanwhile (a broken pipe, a message cut short)
    hears nothing, and the writer ends without a traceback."""
    with contextlib.suppress(OSError):
        conn.send(("failed", _cause(exc)))


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
