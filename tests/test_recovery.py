"""Crash recovery: `oddsflow replay --recovery-dir` killed with SIGKILL at a quarter, half
and three quarters of the feed, resumed each time with the same command, ends with exactly
the tables of an uninterrupted run, having read only what was left after the last kill.

The runs are real `oddsflow` processes; the kill points are read from the published
DuckDB file, the way a dashboard would see the progress.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from bytewax.recovery import init_db_dir

from flows.bytewax_compat import init_recovery as _init_recovery
from tests.conftest import replay, table

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 180
# The feed spans about 8.4 hours of event time: at 2000x a pass takes 15 s of pacing (more
# where many matches overlap), and the file is published every 2 s, so each kill point is
# seen on the way, well before the end.
SPEED = "2000"
KILL_AT = (0.20, 0.45, 0.70)  # of the feed events


def replay_command(feed: Path, db: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "flows", "replay", str(feed), "--db", str(db), *options]


def published_events(db: Path) -> int:
    """feed_events in the published file; 0 before its first publication."""
    try:
        return int(table(db, "SELECT count(*) FROM feed_events")[0][0])
    except (duckdb.Error, OSError):
        return 0


def lines_read(stdout: str) -> int:
    """Lines read by the run, summed over its processes' summaries."""
    counts = re.findall(r"^lines read\s+([\d,]+)", stdout, re.MULTILINE)
    assert counts, f"no summary in the output:\n{stdout}"
    return sum(int(c.replace(",", "")) for c in counts)


def run_until_killed(command: list[str], db: Path, events: int, log: Path) -> int:
    """Run `command` and SIGKILL all its processes as soon as the published file holds
    `events` feed events, and more than when it started; the count it held then."""
    events = max(events, published_events(db) + 1)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while (seen := published_events(db)) < events:
            if proc.poll() is not None:
                pytest.fail(
                    f"the run ended (exit {proc.returncode}) before {events:,} feed events "
                    f"were published ({seen:,}):\n{log.read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{events:,} feed events not published in {RUN_TIMEOUT_S} s")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return seen


def run_to_the_end(command: list[str]) -> str:
    """What the run printed: its standard output, then its standard error."""
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def said_resumed(output: str, command: str = "replay", what: str = "lines read before") -> int:
    """What a resumed run said it does not read again (replay: lines; live: messages)."""
    said = re.search(
        rf"^oddsflow {command}: resuming from .* \(epoch \d+\): skipping the ([\d,]+) {what}",
        output,
        re.M,
    )
    assert said is not None, output
    return int(said[1].replace(",", ""))


def differing_tables(got: dict[str, list], expected: dict[str, list]) -> list[str]:
    """The tables whose whole content differs (each compared sorted)."""
    assert got.keys() == expected.keys()
    return [name for name in expected if got[name] != expected[name]]


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 100-match feed with bets, deposits and injected faults."""
    from tooling.simulator import write_feed

    path = tmp_path_factory.mktemp("recovery") / "feed100.jsonl.gz"
    write_feed(path, matches=100, seed=41)
    return path


@pytest.fixture(scope="module")
def uninterrupted(feed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay([feed], tmp_path_factory.mktemp("uninterrupted") / "whole.duckdb")


def test_killed_three_times_and_resumed_equals_an_uninterrupted_run(
    feed: Path, uninterrupted: Path, tmp_path: Path, dump: Callable[[Path], dict]
) -> None:
    expected = dump(uninterrupted)
    total_events = len(expected["feed_events"])
    with gzip.open(feed) as f:
        total_lines = sum(1 for _ in f)
    db, store = tmp_path / "resumed.duckdb", tmp_path / "recovery"
    command = replay_command(
        feed, db, "--recovery-dir", str(store), "--snapshot-s", "1", "--speed", SPEED
    )

    seen = []
    for n, fraction in enumerate(KILL_AT):
        seen.append(run_until_killed(command, db, int(total_events * fraction), tmp_path / f"{n}"))
        assert sorted(p.name for p in store.glob("part-*.sqlite3")) == ["part-0.sqlite3"]
    assert seen[-1] < total_events, f"every kill came mid-feed: {seen}"

    out = run_to_the_end(command)
    read = lines_read(out)
    # Resumed from the last snapshot before the third kill (70 % of the feed events or more
    # were published by then), not from the start, and said so.
    assert 0 < read < total_lines * 0.5, f"read {read:,} of {total_lines:,} lines"
    assert said_resumed(out) == total_lines - read
    assert differing_tables(dump(db), expected) == []

    # A finished run resumes at the end of its input: nothing is read or changed again.
    out = run_to_the_end(command)
    assert lines_read(out) == 0 and said_resumed(out) == total_lines
    assert differing_tables(dump(db), expected) == []


def test_a_new_run_drops_the_snapshots_a_killed_run_left_uncommitted(tmp_path: Path) -> None:
    """Snapshots past the epoch every partition committed are a dead run's: the next run
    numbers those epochs again, and a key it leaves alone there would keep the dead run's
    state for the resume after it. Committed ones (and older, for --backup-s) stay."""
    init_db_dir(tmp_path, 2)
    for part, committed in enumerate((5, 3)):
        with sqlite3.connect(tmp_path / f"part-{part}.sqlite3") as con:
            con.execute(
                "INSERT INTO commits (part_index, commit_epoch) VALUES (?, ?)", (part, committed)
            )
            for epoch in (2, 3, 4, 6):
                con.execute(
                    "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                    "VALUES (?, ?, ?, ?)",
                    ("flow.sync.match", f"m{part}", epoch, b"state"),
                )
        con.close()

    _init_recovery(tmp_path, 2)  # what `oddsflow live/replay --recovery-dir` runs first

    for part in (0, 1):
        with sqlite3.connect(tmp_path / f"part-{part}.sqlite3") as con:
            epochs = [e for (e,) in con.execute("SELECT snap_epoch FROM snaps ORDER BY 1")]
        con.close()
        assert epochs == [2, 3], part
