"""The engine's fast path for in-sequence heartbeats gives exactly what the general path
gives: the same rows, in the same order, on a simulated feed with faults and bets, and
while a backup provider disagrees with the driving one."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec
import pytest

from operators.engine import MatchProcessor
from operators.parse import RawLine, is_wallet_key, route
from operators.rows import MarketStatusRow, Row
from tests.feedkit import Feed, run
from tooling.simulator import simulate


@contextmanager
def general_path_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(MatchProcessor, "_heartbeats", lambda self, lines, i, out: i)
        yield


@contextmanager
def counting_fast_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    taken = 0
    fast = MatchProcessor._heartbeats

    def counting(self: MatchProcessor, lines: list[RawLine], i: int, out: list[Row]) -> int:
        nonlocal taken
        after = fast(self, lines, i, out)  # type: ignore[arg-type]
        taken += after - i
        return after

    with monkeypatch.context() as patch:
        patch.setattr(MatchProcessor, "_heartbeats", counting)
        yield lambda: taken


def both_paths(lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[list[Row], int]:
    """The rows with the fast path (and how often it was taken), checked equal without."""
    with counting_fast_path(monkeypatch) as taken:
        rows = run(lines)
    with general_path_only(monkeypatch):
        assert run(lines) == rows
    return rows, taken()


def test_heartbeats_on_the_fast_path_give_the_rows_of_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [s.line.encode() for s in simulate(6, seed=5, bets_per_match=40, fault_rate=0.03)]
    _, taken = both_paths(lines, monkeypatch)
    assert taken > len(lines) // 2  # most lines are heartbeats, and they took it


def test_a_driver_heartbeat_ends_a_conflict_with_a_backup_gone_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver, backup = Feed().fixture().kick_off(), Feed(provider="alt")
    backup.add(1_000, "period_start", period=1)
    backup.add(2_000, "goal", goal_id="a1", team="home", state="possible")
    backup.add(2_500, "goal", goal_id="a1", team="home", state="confirmed")
    driver.clocks(4_000, 24_000)  # the backup is silent from 2.5 s: stale after 12.5 s
    lines = [line for _, line in sorted(_timed(driver) + _timed(backup))]
    rows, taken = both_paths(lines, monkeypatch)
    reasons = [r.reason for r in rows if isinstance(r, MarketStatusRow) and r.market == "1x2"]
    assert "provider_conflict" in reasons and reasons[-1] == "reopen"
    assert taken >= 5


def _timed(feed: Feed) -> list[tuple[int, bytes]]:
    return [(msgspec.json.decode(line)["ts"], line) for line in feed.lines]


@pytest.mark.parametrize("decoded", [True, False], ids=["routed", "from-another-worker"])
def test_batches_of_a_key_give_the_rows_of_its_lines_one_by_one(
    monkeypatch: pytest.MonkeyPatch, decoded: bool
) -> None:
    """What the dataflow does: each match gets its lines in batches of any size, routed
    (decoded once) or pickled on their way from another worker (decoded where they land)."""
    lines = [s.line.encode() for s in simulate(4, seed=9, bets_per_match=60, fault_rate=0.03)]
    by_key: dict[str, list[RawLine]] = {}
    for n, data in enumerate(lines, 1):
        for key, item in route(RawLine(f"test:{n}", data)):
            if not is_wallet_key(key):
                by_key.setdefault(key, []).append(
                    item if decoded else pickle.loads(pickle.dumps(item))
                )
    sizes = random.Random(4)
    batched: dict[str, list[object]] = {}
    taken = 0
    with counting_fast_path(monkeypatch) as count:
        for key, items in by_key.items():
            proc, out, i = MatchProcessor(), batched.setdefault(key, []), 0
            while i < len(items):
                size = sizes.choice((1, 2, 7, 50, 1000))
                out.extend(proc.process_lines(items[i : i + size]))
                i += size
        taken = count()
    with general_path_only(monkeypatch):
        for key, items in by_key.items():
            proc = MatchProcessor()
            assert [row for raw in items for row in proc.process(raw)] == batched[key], key
    assert taken > len(lines) // 2
