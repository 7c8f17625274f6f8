"""The DuckDB writer on its own: publication while the input is quiet, idempotent appends,
the published views over Parquet segments, their merging."""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from operators.ladder import LADDER
from operators.rows import BetRow, FeedEventRow, MatchRow, Reject
from sinks.duckdb_sink import STATS, DuckDBWriter
from sinks.duckdb_store import FANOUT, Manifest, _by_table, data_dir, to_arrow


def count(db: Path, table: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


@pytest.mark.parametrize("worker", [0, 3])
def test_the_last_rows_are_published_while_no_more_come(tmp_path: Path, worker: int) -> None:
    """Whichever worker it is: a cluster's worker 0 may hold no rows at all."""
    db = tmp_path / "quiet.duckdb"
    writer = DuckDBWriter(db, worker, publish_every_s=0.5)
    writer.add([Reject(f"f:{i}", "bad", "", "", 1, None, None) for i in range(10)])
    writer.sync()
    time.sleep(0.1)
    writer.add([Reject("f:last", "bad", "", "", 1, None, None)])
    writer.sync()
    time.sleep(1.5)  # no rows, no flow calls: the writer process publishes by itself
    try:
        assert count(db, "rejects") == 11
    finally:
        writer.close()


def test_a_writer_process_that_dies_fails_the_flow_with_that_cause(tmp_path: Path) -> None:
    writer = DuckDBWriter(tmp_path / "dies.duckdb")
    writer.add([Reject("f:1", "bad", "", "", 1, None, None)])
    writer.sync()
    writer.process.kill()
    writer.add([Reject("f:2", "bad", "", "", 1, None, None)])
    with pytest.raises(RuntimeError, match=r"writer process ended \(exit code -9\)"):
        writer.sync()


def test_a_failed_writer_leaves_no_commit_pending_to_spin_on(tmp_path: Path) -> None:
    """Chunks sent but not committed when the writer fails are never committed: the
    sending thread must not keep waking for their commit (it spun at full CPU)."""
    writer = DuckDBWriter(tmp_path / "fails.duckdb", flush_every_s=0.0, commit_every_s=1.0)
    writer.sync()  # nothing to commit: returns once the writer process is ready
    writer.add([Reject("f:1", "bad", "", "", 1, None, None)])
    time.sleep(0.3)  # sent; its commit falls due 1 s after
    writer.process.kill()
    writer.process.wait()
    writer.add([Reject("f:2", "bad", "", "", 1, None, None)])  # its sending fails
    time.sleep(1.2)  # the commit is past due
    started = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - started < 0.3
    with pytest.raises(RuntimeError, match=r"writer process ended"):
        writer.sync()


def hold_lock(db: Path, worker: int = 0) -> object:
    """What a running writer of `worker` holds for its life."""
    path = data_dir(db) / f"w{worker:04d}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("ab")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def test_a_database_another_flow_writes_is_refused_at_the_first_write(tmp_path: Path) -> None:
    db = tmp_path / "taken.duckdb"
    holder = hold_lock(db)
    try:
        writer = DuckDBWriter(db, lock_wait_s=0.5)
        writer.add([Reject("f:1", "bad", "", "", 1, None, None)])
        with pytest.raises(RuntimeError, match=r"another flow is writing .*taken.duckdb"):
            writer.sync()
    finally:
        holder.close()  # type: ignore[attr-defined]


def test_a_lock_released_within_the_wait_is_taken(tmp_path: Path) -> None:
    """A restart right after a crash: the old writer finishes its commit, then lets go."""
    db = tmp_path / "released.duckdb"
    holder = hold_lock(db)
    threading.Timer(1.0, holder.close).start()  # type: ignore[attr-defined]
    writer = DuckDBWriter(db, lock_wait_s=10)
    writer.add([Reject("f:1", "bad", "", "", 1, None, None)])
    writer.close()
    assert count(db, "rejects") == 1


def test_workers_write_their_own_segments_and_the_views_show_all_of_them(
    tmp_path: Path,
) -> None:
    """Two workers' writers: one published file; a key's newest version (a match: its
    `ts`) wins whoever wrote it and whenever (a resumed run may move a key to another
    worker, and hand an older row over again); the first reject of a key stays."""
    db = tmp_path / "two.duckdb"
    first, second = DuckDBWriter(db, 0), DuckDBWriter(db, 1)
    first.add([MatchRow("m1", "A", "B", 0, 1, 5, 1, 0, 0, 0, "live", 10)])
    first.add([Reject("f:1", "bad", "first", "", 1, None, None)])
    second.add([MatchRow("m2", "C", "D", 0, 1, 5, 0, 2, 0, 0, "live", 10)])
    second.sync()
    first.close()
    listed = json.loads((data_dir(db) / "published.json").read_text())
    assert sorted(listed) == ["w0000", "w0001"]  # the first to end published both
    second.add([MatchRow("m1", "A", "B", 0, 2, 80, 3, 0, 0, 0, "live", 20)])  # m1 moved
    second.add([Reject("f:1", "bad", "again", "", 1, None, None)])
    second.add([MatchRow("m2", "C", "D", 0, 1, 4, 9, 1, 0, 0, "live", 9)])  # handed over again
    second.close()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT match_id, home_score FROM matches ORDER BY 1").fetchall() == [
            ("m1", 3),
            ("m2", 0),
        ]
        assert con.execute("SELECT detail FROM rejects").fetchall() == [("first",)]
        assert con.execute("SELECT count(*) FROM bets").fetchone() == (0,)  # none: empty view
    finally:
        con.close()
    assert sorted(p.name for p in data_dir(db).glob("w*.json")) == ["w0000.json", "w0001.json"]


def test_segments_of_one_size_merge_and_the_merged_ones_go_later(tmp_path: Path) -> None:
    db = tmp_path / "merge.duckdb"
    writer = DuckDBWriter(db, flush_every_s=0.0)
    commits = FANOUT * 2 + 1
    for seq in range(commits):  # one segment per commit
        writer.add([FeedEventRow("p", "m", seq, seq, "clock", "{}", f"f:{seq}")])
        writer.sync()
    writer.close()
    manifest = Manifest.load(data_dir(db) / "w0000.json")
    assert sorted(level for _, level in manifest.live["feed_events"]) == [0, 1, 1]
    assert len(manifest.retired) == 2 * FANOUT  # kept a while for readers of older copies
    assert count(db, "feed_events") == commits
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT list(seq ORDER BY seq) FROM feed_events").fetchone() == (
        list(range(commits)),
    )
    con.close()


def test_rows_written_again_after_a_restart_are_skipped(tmp_path: Path) -> None:
    db = tmp_path / "again.duckdb"
    rows = [FeedEventRow("p", "m", seq, seq, "clock", "{}", f"f:{seq}") for seq in range(1, 6)]
    first = DuckDBWriter(db)
    first.add(rows[:3])
    first.close()
    resumed = DuckDBWriter(db)  # a resumed run emits rows 2..5 again
    resumed.add(rows[1:])
    resumed.close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT seq FROM feed_events ORDER BY seq").fetchall() == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
    ]
    con.close()


def test_chunks_wait_for_the_commit_interval_and_commit_in_order(tmp_path: Path) -> None:
    """Chunks sent between commits are committed in one segment, each row in its place:
    of several rows of one key and `ts`, the last wins (`matches` keeps the latest)."""
    db = tmp_path / "chunks.duckdb"
    writer = DuckDBWriter(db, flush_every_s=0.0, commit_every_s=60.0)
    try:
        for chunk in range(4):  # four chunks of two rows: every add flushes
            goals = (chunk, 7 - chunk)
            writer.add([MatchRow("m", "A", "B", 0, 1, g, g, 0, 0, 0, "live", 9) for g in goals])
        time.sleep(0.5)
        assert len(writer.unsaved()) == 4  # sent, not committed: the interval is 60 s
        writer.sync()  # commits at once
        assert writer.unsaved() == []
    finally:
        writer.close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT home_score, ts FROM matches").fetchall() == [(4, 9)]
    con.close()
    chunks = [[("t", pa.table({"x": [i, i], "_pos": [0, 1]}))] for i in range(3)]
    [(_, merged)] = _by_table(chunks)
    assert merged.to_pydict() == {"x": [0, 0, 1, 1, 2, 2], "_pos": [0, 1, 2, 3, 4, 5]}


def test_rows_reach_arrow_in_the_writer_exactly() -> None:
    """What the flow's side sends (MessagePack, decimals as text) is what the writer's
    Arrow columns hold: ladder prices, money with more digits, nulls, floats, text."""
    from sinks.duckdb_sink import _encoder
    from sinks.tables import tables

    prices = [LADDER[0], LADDER[-1], Decimal("2.5"), Decimal("2.50"), *LADDER[100:140]]
    stakes = [Decimal("123456789.01"), Decimal("0.10"), Decimal("7")]  # DECIMAL(12, 2)
    rows = [
        BetRow(
            f"b{i}",
            "u1",
            "m1",
            "1x2",
            "home",
            stakes[i % 3],
            price,
            "accepted",
            "",
            Decimal("0.00"),
            10 + i,
            1,
        )
        for i, price in enumerate(prices)
    ]
    arrow = to_arrow(tables()["bets"], _encoder.encode(rows))
    assert arrow.column("price").type == pa.decimal128(7, 2)
    assert arrow.column("price").to_pylist() == prices
    assert arrow.column("stake").to_pylist() == [r.stake for r in rows]
    assert arrow.column("_pos").to_pylist() == list(range(len(rows)))
    reject = Reject("f:1", "bad", "détail", "{}", None, None, "m")
    got = to_arrow(tables()["rejects"], _encoder.encode([reject])).to_pylist()
    assert got == [{**reject._asdict(), "_pos": 0}]
    with pytest.raises(pa.ArrowInvalid):  # never rounded
        to_arrow(tables()["bets"], _encoder.encode([rows[0]._replace(price=Decimal("1.955"))]))


def test_rows_sent_again_from_a_snapshot_are_written_but_not_counted_as_this_runs(
    tmp_path: Path,
) -> None:
    """A resumed run's summary counts the rows of the lines it read, not the rows an
    earlier run computed that the snapshot hands over again (it said "accepted -56")."""
    reject = Reject("f:1", "duplicate", "seen before", "{}", 1, "p", "m")
    row = FeedEventRow("p", "m", 1, 1, "clock", "{}", "f:2")
    before = sum(STATS.rejects.values()), STATS.rows["feed_events"]
    writer = DuckDBWriter(tmp_path / "resumed.duckdb")
    writer.resend([{Reject: [reject]}])
    writer.add([row])
    writer.close()
    assert count(tmp_path / "resumed.duckdb", "rejects") == 1  # written
    assert sum(STATS.rejects.values()) == before[0]  # not this run's
    assert STATS.rows["feed_events"] == before[1] + 1


def test_an_export_holds_the_published_rows_in_tables_of_its_own(tmp_path: Path) -> None:
    from flows.cli import main

    db = tmp_path / "pub.duckdb"
    writer = DuckDBWriter(db)
    writer.add([MatchRow("m1", "A", "B", 0, 1, 5, 1, 0, 0, 0, "live", 10)])
    writer.add([Reject("f:1", "bad", "x", "", 1, None, None)])
    writer.close()
    out = tmp_path / "copy" / "standalone.duckdb"
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    shutil.rmtree(data_dir(db))  # the copy needs nothing of the flow's
    con = duckdb.connect(str(out), read_only=True)
    try:
        kinds = dict(
            con.sql("SELECT table_name, table_type FROM information_schema.tables").fetchall()
        )
        assert kinds["matches"] == "BASE TABLE" and kinds["exposure"] == "VIEW"
        assert con.execute("SELECT match_id, home_score FROM matches").fetchall() == [("m1", 1)]
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (1,)
    finally:
        con.close()
    assert main(["export", "--db", str(tmp_path / "missing.duckdb"), "--out", str(out)]) == 2
