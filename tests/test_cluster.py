"""Clustered runs: one worker, two workers, two processes (and two of each) replay the same
feed into the same tables; a two-process run killed mid-feed resumes on one process.

Every run but the reference is a real `oddsflow replay` command: `--processes 2` starts a
cluster of two processes on localhost, which read each line once and pickle every item that
changes worker between them.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import replay
from tests.test_recovery import (
    REPO,
    SPEED,
    differing_tables,
    lines_read,
    replay_command,
    run_to_the_end,
    run_until_killed,
)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 40-match feed with bets, deposits and injected faults."""
    from flows.simulator import write_feed

    path = tmp_path_factory.mktemp("cluster") / "feed40.jsonl.gz"
    write_feed(path, matches=40, seed=43)
    return path


@pytest.fixture(scope="module")
def feed_lines(feed: Path) -> int:
    with gzip.open(feed) as f:
        return sum(1 for _ in f)


@pytest.fixture(scope="module")
def one_worker(feed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The feed replayed by one worker (in this process)."""
    return replay([feed], tmp_path_factory.mktemp("one") / "one.duckdb")


@pytest.mark.parametrize(
    "cluster",
    [["--workers", "2"], ["--processes", "2"], ["--processes", "2", "--workers", "2"]],
    ids=["2-workers", "2-processes", "2-processes-2-workers"],
)
def test_a_cluster_writes_the_tables_of_one_worker(
    feed: Path,
    feed_lines: int,
    one_worker: Path,
    cluster: list[str],
    tmp_path: Path,
    dump: Callable[[Path], dict],
) -> None:
    db = tmp_path / "cluster.duckdb"
    out = run_to_the_end(replay_command(feed, db, *cluster))
    assert lines_read(out) == feed_lines  # each line read once, by one process
    assert differing_tables(dump(db), dump(one_worker)) == []


def test_a_killed_two_process_run_resumes_on_one_process(
    feed: Path, feed_lines: int, one_worker: Path, tmp_path: Path, dump: Callable[[Path], dict]
) -> None:
    expected = dump(one_worker)
    db, store = tmp_path / "resumed.duckdb", tmp_path / "recovery"
    # Paced as in test_recovery: at full speed a third of the feed can be published before
    # the first snapshot is stored, and the resumed run then rightly reads everything.
    command = replay_command(
        feed, db, "--recovery-dir", str(store), "--snapshot-s", "1", "--speed", SPEED
    )
    killed_at = run_until_killed(
        [*command, "--processes", "2"], db, len(expected["feed_events"]) // 3, tmp_path / "log"
    )
    assert killed_at < len(expected["feed_events"])
    # One recovery partition per worker of the first run; any later run may read them all.
    assert sorted(p.name for p in store.glob("part-*.sqlite3")) == [
        "part-0.sqlite3",
        "part-1.sqlite3",
    ]
    read = lines_read(run_to_the_end(command))
    assert 0 < read < feed_lines, f"read {read:,} of {feed_lines:,} lines"
    assert differing_tables(dump(db), expected) == []


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_killing_the_command_ends_its_local_cluster(feed: Path, tmp_path: Path) -> None:
    """SIGKILL to `oddsflow replay --processes 2` alone: its processes end too, so a restart
    never runs next to a previous cluster writing the same files."""
    command = replay_command(feed, tmp_path / "db.duckdb", "--processes", "2", "--speed", "50")
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(members := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(members) >= 2, "the cluster did not start"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(m) for m in members) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(m) for m in members)
