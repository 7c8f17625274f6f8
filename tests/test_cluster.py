"""Clustered runs: one worker, two workers, two processes (and two of each) replay the same
feed into the same tables; a two-process run killed mid-feed resumes on one process. A feed
split by match into several files (one partition each) gives the tables of the same files
read as one stream (`--merge`) at every scale, resumed at another scale too; every process
of a cluster writes its own rows.

Every run but the references is a real `oddsflow replay` command: `--processes 2` starts a
cluster of two processes on localhost, which read each line once and pickle every item that
changes worker between them.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sinks.duckdb_store import Manifest, data_dir
from tests.conftest import replay
from tests.test_recovery import (
    REPO,
    SPEED,
    differing_tables,
    lines_read,
    published_events,
    replay_command,
    run_to_the_end,
    run_until_killed,
    said_resumed,
)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 40-match feed with bets, deposits and injected faults."""
    from tooling.simulator import write_feed

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
    out = run_to_the_end(command)
    read = lines_read(out)
    assert 0 < read < feed_lines, f"read {read:,} of {feed_lines:,} lines"
    assert said_resumed(out) == feed_lines - read
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


# ---- A feed split by match into files: the same tables at every scale ------------------------


@pytest.fixture(scope="module")
def split_feed(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 40-match feed split by match into 3 files, every deposit in the first."""
    from tooling.simulator import partition_paths, write_feed

    path = tmp_path_factory.mktemp("split") / "split.jsonl.gz"
    write_feed(path, matches=40, seed=44, partitions=3)
    return partition_paths(path, 3)


@pytest.fixture(scope="module")
def merged(split_feed: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the files read as one stream in event-time order, by one worker."""
    return replay(split_feed, tmp_path_factory.mktemp("merged") / "merged.duckdb", merge=True)


def split_command(files: list[Path], db: Path, *options: str) -> list[str]:
    command = replay_command(files[0], db, *options)
    return [*command[:5], *map(str, files[1:]), *command[5:]]


def test_the_split_files_hold_every_match_in_one_file_and_the_deposits_in_the_first(
    split_feed: list[Path],
) -> None:
    holders: dict[str, set[int]] = {}
    for i, path in enumerate(split_feed):
        with gzip.open(path, "rt") as f:
            for line in f:
                if '"type":"deposit"' in line:
                    assert i == 0, line
                for match in re.findall(r'"match_id":"([^"]+)"', line):
                    holders.setdefault(match, set()).add(i)
    assert len(holders) >= 40
    assert all(len(files) == 1 for files in holders.values())


@pytest.mark.parametrize(
    "scale",
    [[], ["--processes", "2"], ["--processes", "2", "--workers", "2"]],
    ids=["1-process", "2-processes", "2-processes-2-workers"],
)
def test_split_files_give_the_merged_tables_at_every_scale(
    split_feed: list[Path],
    merged: Path,
    scale: list[str],
    tmp_path: Path,
    dump: Callable[[Path], dict],
) -> None:
    db = tmp_path / "split.duckdb"
    run_to_the_end(split_command(split_feed, db, *scale))
    assert differing_tables(dump(db), dump(merged)) == []


def test_every_process_of_a_cluster_writes_its_own_rows(
    split_feed: list[Path], tmp_path: Path
) -> None:
    db = tmp_path / "own.duckdb"
    out = run_to_the_end(split_command(split_feed, db, "--processes", "2"))
    written = re.findall(r"^rows written\s+([\d,]+)", out, re.MULTILINE)
    assert len(written) == 2 and all(int(n.replace(",", "")) > 0 for n in written), out
    for worker in ("w0000", "w0001"):  # process 0 runs worker 0, process 1 worker 1
        manifest = Manifest.load(data_dir(db) / f"{worker}.json")
        assert manifest.live.get("feed_events"), f"{worker} wrote no feed events"


def test_a_killed_two_process_run_resumed_at_another_scale_gives_the_merged_tables(
    split_feed: list[Path], merged: Path, tmp_path: Path, dump: Callable[[Path], dict]
) -> None:
    expected = dump(merged)
    db, store = tmp_path / "rescaled.duckdb", tmp_path / "recovery"
    options = ["--recovery-dir", str(store), "--snapshot-s", "1", "--speed", SPEED]
    killed_at = run_until_killed(
        split_command(split_feed, db, *options, "--processes", "2"),
        db,
        len(expected["feed_events"]) // 3,
        tmp_path / "log",
    )
    assert killed_at < len(expected["feed_events"])
    out = run_to_the_end(split_command(split_feed, db, *options, "--workers", "3"))
    total = 0
    for path in split_feed:
        with gzip.open(path) as f:
            total += sum(1 for _ in f)
    assert 0 < lines_read(out) < total
    assert said_resumed(out) == total - lines_read(out)
    assert differing_tables(dump(db), expected) == []


def cluster_members(pid: int) -> list[int]:
    """The cluster members among the children of `pid` (not multiprocessing's helpers)."""
    members = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            members.append(child)
    return members


def test_a_cluster_with_a_recovery_store_restarts_itself_when_a_member_is_killed(
    split_feed: list[Path], merged: Path, tmp_path: Path, dump: Callable[[Path], dict]
) -> None:
    expected = dump(merged)
    db, store = tmp_path / "healed.duckdb", tmp_path / "recovery"
    options = ["--recovery-dir", str(store), "--snapshot-s", "1", "--speed", SPEED]
    proc = subprocess.Popen(
        split_command(split_feed, db, *options, "--processes", "2"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while published_events(db) < len(expected["feed_events"]) // 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the cluster published too little"
            time.sleep(0.05)
        victim = max(cluster_members(proc.pid))
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert re.search(r"oddsflow-\d was killed \(signal 9\); restarting the cluster", err), err
    assert re.search(r"rows committed again [\d.]+ s after the member died", err), err
    assert differing_tables(dump(db), expected) == []


def test_a_member_waits_for_the_earlier_members_to_listen_and_no_longer() -> None:
    """Bytewax's cluster start sleeps a whole second after a refused connection: a member
    joins once every member before it listens (seen in /proc/net/tcp, no connection)."""
    import socket

    from flows.bytewax_compat import await_earlier_members

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: a member still starting
    try:
        ports = [s.getsockname()[1] for s in (listening, closed)]
        addresses = [f"127.0.0.1:{p}" for p in ports] + ["127.0.0.1:1"]
        started = time.monotonic()
        await_earlier_members(addresses, 1)  # member 0 listens
        assert time.monotonic() - started < 0.5
        await_earlier_members(addresses, 0)  # the first member waits for nobody
        started = time.monotonic()
        await_earlier_members(addresses, 2, timeout_s=0.3)  # member 1 does not listen
        assert time.monotonic() - started >= 0.3
    finally:
        listening.close()
        closed.close()
