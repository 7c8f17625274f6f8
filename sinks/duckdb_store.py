"""The DuckDB writer process: the one holder of the writer database's connection.

`DuckDBWriter` (the flow's side, `sinks/duckdb_sink.py`) starts `serve` in a process of its
own and sends it Arrow batches; here they are upserted, one transaction per batch, and the
read-only copy is published. Running DuckDB's statements in another process keeps them off
the flow's interpreter lock: a commit and a publish cost tens to hundreds of milliseconds,
much of it holding the lock of the process they run in, and a live flow's latency target is
25 ms. No Bytewax and no row types here, only tables.

The conversation over the pipe, flow -> store: `(db, publish_every_s, lock_wait_s)` once,
then chunks of rows `("rows", [(table, Arrow table), ...])` and, now and then,
`("commit",)` to commit every chunk since the last one in one transaction; None to close.
Store -> flow: `("ready", marks)` once, then `("committed",)` per commit, `("closed",)` at
the end, or `("failed", cause)` at any time, after which it takes nothing. Chunks and
commits are separate so that the flow's side converts and sends rows in small pieces (each
holds the flow's interpreter lock for a moment only) while commits, which cost a fixed
amount per table, stay rare.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from sinks.publish import Publisher
from sinks.tables import Table, schema_sql, tables

# Tables that hold the latest state per key: the newest `version` wins (None: the last row).
LATEST: dict[str, str | None] = {
    "matches": None,
    "market_status": "version",
    "bets": "version",
    "wallets": "version",
}

# Per append-only table, per group: the highest `rising` number stored (see HighWaterMarks).
Marks = dict[str, dict[object, int]]
Batch = list[tuple[str, pa.Table]]


def writer_path(db: Path) -> Path:
    """Where the flow keeps its own read-write database for the published file `db`."""
    return db.with_name(f"{db.stem}.writer{db.suffix or '.duckdb'}")


class Store:
    """The writer database: schema, idempotent upserts, publication of the read-only copy."""

    def __init__(self, db: Path, publish_every_s: float, lock_wait_s: float) -> None:
        db.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(writer_path(db), lock_wait_s)
        self.con.execute("SET checkpoint_threshold = '1GB'")  # we checkpoint when publishing
        # One thread: the flow has the other core of a small machine; DuckDB's pool would
        # take CPU from it for little gain on these batches.
        self.con.execute("SET threads = 1")
        self.con.execute(schema_sql())
        self.tables = tables()
        self.publisher = Publisher(self.con, writer_path(db), db, publish_every_s)

    def marks(self) -> Marks:
        """The high-water marks of every append-only table, for the flow's side to skip rows
        written before a restart (their key rises within the group)."""
        found: Marks = {}
        for table in self.tables.values():
            if table.rising:
                cols = ", ".join(table.group)
                rows = self.con.sql(
                    f"SELECT {cols}, max({table.rising}) FROM {table.name} GROUP BY ALL"
                ).fetchall()
                found[table.name] = {(r[0] if len(r) == 2 else tuple(r[:-1])): r[-1] for r in rows}
        return found

    def commit(self, chunks: list[Batch]) -> None:
        """Upsert `chunks`, in order, in one transaction."""
        self.con.execute("BEGIN")
        try:
            for name, arrow in _by_table(chunks):
                self.con.register("batch", arrow)
                try:
                    self.con.execute(_upsert_sql(self.tables[name], LATEST.get(name, "")))
                finally:
                    self.con.unregister("batch")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def close(self) -> None:
        self.publisher.publish()
        self.con.close()


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


def _connect(path: Path, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    """The writer's connection. A writer whose flow just died ends at its next read of the
    pipe, so it may hold the file's lock for the rest of a commit or a publish (a second
    or so): a restarted flow waits up to `lock_wait_s` for it before giving up."""
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _upsert_sql(table: Table, version: str | None) -> str:
    """Insert the local Arrow table `batch` into `table`, idempotently.

    Facts (history, events, rejects) are inserted once and never changed; latest-state
    tables take the incoming row, or only a newer `version` when the table has one. A
    batch may hold several rows of one key there: the newest version wins, then the last
    (`_pos`, the rows' order).
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


def start_store(
    db: Path, publish_every_s: float, lock_wait_s: float
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
    pipe.send((db, publish_every_s, lock_wait_s))
    return pipe, process


def serve(conn: Connection) -> None:
    """The writer process: keep the chunks that come, commit them when asked; publish when
    due, also while nothing comes (so the last rows of a quiet live feed are published within
    `publish_every_s`). Signals are the flow's business: a Ctrl-C or SIGTERM sent to the
    whole process group must not kill the writer before the flow's final commit; it ends
    when the flow says so, or when the flow's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        db, publish_every_s, lock_wait_s = conn.recv()
        store = Store(db, publish_every_s, lock_wait_s)
        conn.send(("ready", store.marks()))
    except Exception as exc:
        conn.send(("failed", _cause(exc)))
        return
    dirty = False
    chunks: list[Batch] = []  # received, not committed yet
    try:
        while True:
            if conn.poll(store.publisher.due_in() if dirty else None):
                message = conn.recv()
                if message is None:
                    store.close()
                    conn.send(("closed",))
                    return
                if message[0] == "rows":
                    chunks.append(message[1])
                else:  # "commit"
                    store.commit(chunks)
                    chunks = []
                    conn.send(("committed",))
                    dirty = True
            if dirty and store.publisher.due():
                store.publisher.publish()
                dirty = False
    except EOFError:
        return  # the flow is gone: nobody to answer
    except Exception as exc:
        conn.send(("failed", _cause(exc)))


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
