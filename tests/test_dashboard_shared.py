"""Query results shared between the dashboard's viewers: one computation per question and
publication of the file, however many sessions ask at once; a new publication is read anew."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import queries, shared_results
from dashboard.shared_results import SharedResults
from tests.conftest import replay
from tooling.simulator import write_feed


@pytest.fixture(scope="module")
def two_publications(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two published files of different feeds (one match, then two)."""
    tmp = tmp_path_factory.mktemp("shared")
    dbs = []
    for matches in (1, 2):
        feed = tmp / f"feed{matches}.jsonl"
        write_feed(feed, matches=matches, seed=4)
        dbs.append(replay([feed], tmp / f"m{matches}" / "pub.duckdb"))
    return dbs[0], dbs[1]


@pytest.fixture
def fresh() -> Iterator[None]:
    shared_results.SHARED.clear()
    yield
    shared_results.SHARED.clear()


def test_ten_callers_at_once_compute_once() -> None:
    shared = SharedResults()
    calls = []
    start = threading.Barrier(10)

    def compute() -> int:
        calls.append(1)
        time.sleep(0.3)  # the others arrive while this runs
        return 42

    results = []

    def viewer() -> None:
        start.wait()
        results.append(shared.get("q", compute))

    threads = [threading.Thread(target=viewer) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(calls) == 1
    assert sorted(results) == [(42, False)] + [(42, True)] * 9


def test_a_failure_is_not_kept_and_old_entries_go() -> None:
    shared = SharedResults(max_entries=2)

    def broken() -> int:
        raise OSError("file gone")

    with pytest.raises(OSError):
        shared.get("q", broken)
    assert shared.get("q", lambda: 1) == (1, False)
    shared.get("r", lambda: 2)
    shared.get("s", lambda: 3)
    assert shared.get("q", lambda: 4) == (4, False)  # q was the least recently used


def test_viewers_of_one_publication_share_and_a_new_one_is_read_anew(
    two_publications: tuple[Path, Path], tmp_path: Path, fresh: None
) -> None:
    first, second = two_publications
    path = tmp_path / "published.duckdb"
    _publish(first, path)
    timings = shared_results.TIMINGS

    calls = timings.calls
    one = queries.refresh_all(path)
    alone = timings.calls - calls
    calls, shared = timings.calls, timings.shared
    for _ in range(9):
        assert queries.refresh_all(path) == one
    assert alone >= 10  # connects and queries
    assert timings.calls == calls  # nine more viewers, no DuckDB call at all
    assert timings.shared - shared >= 9 * (alone - 2)

    _publish(second, path)  # the flow publishes: a new file under the same name
    two = queries.refresh_all(path)
    assert one is not None and two is not None
    assert (one.matches, two.matches) == (1, 2)
    assert timings.calls - calls >= alone  # (two matches: a few more questions)


def test_sharing_can_be_turned_off(
    two_publications: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, fresh: None
) -> None:
    monkeypatch.setenv(shared_results.CACHE_ENV, "0")
    timings = shared_results.TIMINGS
    queries.refresh_all(two_publications[0])
    calls = timings.calls
    queries.refresh_all(two_publications[0])
    assert timings.calls - calls >= 10


def _publish(source: Path, path: Path) -> None:
    """Replace `path` atomically with a copy of `source`, as the flow publishes."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.copyfile(source, tmp)
    data = source.with_name(source.stem + ".data")
    if data.exists():  # the segments the views read
        target = path.with_name(path.stem + ".data")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(data, target)
    os.replace(tmp, path)
