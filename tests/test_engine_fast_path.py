"""Differential test: `MatchProcessor` (in-sequence heartbeats on its fast path) gives
exactly what `GeneralPathProcessor` (every line through `process`) gives, on whole feeds,
each key's lines in batches of any size."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import pytest

from flows.sources import read_lines
from operators.engine import GeneralPathProcessor, MatchProcessor
from operators.parse import RawLine, is_wallet_key
from operators.providers import route_line
from tests.feedkit import KICKOFF, Feed, bet_line
from tooling.simulator import simulate

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jsonl.gz"


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many lines the fast path took (so that a test shows it was exercised)."""
    count = [0]
    fast = MatchProcessor._heartbeats

    def counting(self: MatchProcessor, lines: list[RawLine], i: int, out: list) -> int:
        after = fast(self, lines, i, out)
        count[0] += after - i
        return after

    monkeypatch.setattr(MatchProcessor, "_heartbeats", counting)
    yield count


def keyed(lines: Iterable[RawLine]) -> dict[str, list[RawLine]]:
    """Each match key's lines in feed order, as the dataflow routes them (wallets aside);
    every other key's lines as if they came from another worker (pickled: not decoded)."""
    out: dict[str, list[RawLine]] = {}
    for raw in lines:
        for key, item in route_line(raw):
            if not is_wallet_key(key):
                out.setdefault(key, []).append(item)
    for n, key in enumerate(out):
        if n % 2:
            out[key] = [pickle.loads(pickle.dumps(raw)) for raw in out[key]]
    return out


def assert_both_ways_equal(by_key: dict[str, list[RawLine]]) -> None:
    """Both ways, each key's lines in batches of random sizes; between batches, now and
    then, event time moves on without a line (`idle`, as a live flow's timers do)."""
    draw = random.Random(4)
    for key, lines in by_key.items():
        fast, general = MatchProcessor(), GeneralPathProcessor()
        i = 0
        while i < len(lines):
            batch = lines[i : i + draw.choice((1, 2, 7, 50, 1000))]
            assert fast.process_lines(batch) == general.process_lines(batch), (key, i)
            i += len(batch)
            if draw.random() < 0.2:
                later = general.last_ts + draw.choice((500, 11_000))
                assert fast.idle(later) == general.idle(later), (key, i)
        assert fast.next_due() == general.next_due(), key


def raw_lines(lines: list[bytes]) -> list[RawLine]:
    return [RawLine(f"test:{n}", data) for n, data in enumerate(lines, 1)]


def test_the_sample_feed(taken: list[int]) -> None:
    lines = list(read_lines(SAMPLE))
    assert_both_ways_equal(keyed(lines))
    assert taken[0] > len(lines) // 3


def test_a_mixed_football_and_tennis_feed_with_faults_and_bets(taken: list[int]) -> None:
    sim = simulate(8, seed=5, bets_per_match=60, fault_rate=0.03, sport="mixed")
    lines = raw_lines([s.line.encode() for s in sim])
    assert_both_ways_equal(keyed(lines))
    assert taken[0] > len(lines) // 3


def test_heartbeats_that_make_the_fast_path_stop(taken: list[int]) -> None:
    """Each rarer case the fast path must leave to `process`: a gap, a repeat, silence, a
    reopening due, bets in their delay, a refused line, a bad minute or time, the end."""
    driver = Feed().fixture().kick_off().clocks(4_000, 20_000)
    driver.seq += 1  # a gap in the sequence
    driver.clocks(24_000, 32_000)
    driver.lines.append(driver.lines[-1])  # a repeat
    driver.clocks(60_000, 80_000)  # silent for 28 s: feed_silent, then heard again
    driver.add(81_000, "goal", goal_id="g1", team="home", state="possible")
    driver.add(82_000, "goal", goal_id="g1", team="home", state="confirmed")
    driver.clocks(83_000, 95_000, every=1_000)  # the reopening falls due among them
    driver.lines.append(bet_line(KICKOFF, 96_000, "b1", "u1", "1x2", "home", "10.00", "1.01"))
    driver.clocks(97_000, 105_000, every=1_000)  # the bet in its delay
    driver.add(106_000, "clock", minute=400, second=0)  # past the last minute
    driver.add(-2 * 86_400_000, "clock", minute=1, second=47)  # far from kickoff
    driver.clocks(108_000, 112_000)
    driver.add(113_000, "match_end", home_score=1, away_score=0)
    driver.clocks(114_000, 120_000)  # heartbeats after the end
    by_key = keyed(raw_lines(driver.lines))
    match = by_key["m:m1"]
    assert match[24].event is not None  # decoded: the next heartbeat in sequence, but refused
    match[24] = match[24]._replace(rejected="sim\tline_too_long\tover the limit")
    assert_both_ways_equal(by_key)
    assert taken[0] > 20


def test_a_backup_provider_and_its_conflict(taken: list[int]) -> None:
    """Heartbeats while a backup provider's score disagrees, and after it went stale."""
    driver, backup = Feed().fixture().kick_off(), Feed(provider="alt")
    backup.add(1_000, "period_start", period=1)
    backup.add(2_000, "goal", goal_id="a1", team="home", state="possible")
    backup.add(2_500, "goal", goal_id="a1", team="home", state="confirmed")
    backup.clocks(5_000, 9_000)  # its seq the driver's next: not a driver heartbeat
    driver.clocks(4_000, 24_000)  # the backup is silent from 9 s: stale after 19 s
    merged = sorted(driver.lines + backup.lines, key=lambda line: msgspec.json.decode(line)["ts"])
    assert_both_ways_equal(keyed(raw_lines(merged)))
    assert taken[0] >= 3
