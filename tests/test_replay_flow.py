"""The replay flow end to end on a simulated 200-match feed: real Bytewax, real DuckDB."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.run import cli_main

from flows.replay import get_flow
from tests.conftest import table
from tooling.simulator import simulate

Dump = Callable[[Path], dict[str, list[tuple]]]


def feed_lines(path: Path) -> list[dict]:
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({})
    return out


def test_matches_equal_the_simulators_final_results(sim200: Path, sim200_db: Path) -> None:
    ends = {
        o["match_id"]: (o["home_score"], o["away_score"], o["home_red"], o["away_red"])
        for o in feed_lines(sim200)
        if o.get("type") == "match_end" and o.get("provider") == "sim"
    }
    got = {
        m: (hs, as_, hr, ar, st)
        for m, hs, as_, hr, ar, st in table(
            sim200_db,
            "SELECT match_id, home_score, away_score, home_red, away_red, status FROM matches",
        )
    }
    assert len(ends) == 200
    assert {m: v[:4] for m, v in got.items()} == ends
    assert {v[4] for v in got.values()} == {"ended"}


def test_every_fault_is_rejected_with_its_reason_and_no_valid_line_is(
    sim200: Path, sim200_db: Path
) -> None:
    name = sim200.name
    expected = {f"{name}:{i}": s.fault for i, s in enumerate(simulate(200, 11), 1) if s.fault}
    rejected = table(
        sim200_db, "SELECT source, reason FROM rejects WHERE reason <> 'score_mismatch'"
    )
    assert expected, "the simulator injected no faults"
    got: dict[str, str] = {}
    for source, reason in rejected:
        got.setdefault(source, reason)
    assert got == expected


def test_same_file_twice_and_with_two_workers_gives_identical_tables(
    sim200: Path, sim200_db: Path, tmp_path: Path, dump: Dump
) -> None:
    again = tmp_path / "again.duckdb"
    cli_main(get_flow([sim200], again), workers_per_process=1)
    two = tmp_path / "two.duckdb"
    cli_main(get_flow([sim200], two), workers_per_process=2, epoch_interval=timedelta(seconds=1))
    first = dump(sim200_db)
    assert first["feed_events"] and first["market_history"]
    assert dump(again) == first
    assert dump(two) == first


READER = """
import os, sys, time, duckdb
path = sys.argv[1]
deadline = time.time() + 120
while time.time() < deadline:
    finished = os.path.exists(path + ".done")  # seen before the read: that read is the last
    try:
        con = duckdb.connect(path, read_only=True)
        n = con.execute("SELECT count(*) FROM feed_events").fetchone()[0]
        con.close()
        print(n, flush=True)
    except duckdb.IOException as e:
        if "No such file" not in str(e) and "does not exist" not in str(e):
            print("ERROR", e, flush=True)
    if finished:
        break
    time.sleep(0.1)
"""


def test_a_reader_in_another_process_never_hits_the_lock(sim200: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    cli_main(get_flow([sim200], db, publish_every_s=0.5), workers_per_process=1)
    (tmp_path / "live.duckdb.done").write_text("done")
    out, _ = reader.communicate(timeout=60)
    lines = out.split()
    assert "ERROR" not in out, out
    counts = [int(n) for n in lines]
    assert time.monotonic() - started > 1
    assert len(counts) >= 5, f"the reader saw the file only {len(counts)} times"
    assert counts == sorted(counts), "row counts went down"
    assert counts[-1] == table(db, "SELECT count(*) FROM feed_events")[0][0]


def test_replaying_into_the_same_database_changes_nothing(
    sim200: Path, sim200_db: Path, dump: Dump, tmp_path: Path
) -> None:
    import shutil

    from sinks.duckdb_sink import data_dir

    db = tmp_path / "again.duckdb"
    shutil.copytree(data_dir(sim200_db), data_dir(db))  # the first run's own segments
    cli_main(get_flow([sim200], db), workers_per_process=1)
    assert dump(db) == dump(sim200_db)
