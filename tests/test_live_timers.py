"""Live flows: provider silence and due reopenings fire on the wall clock, without a line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.market_sync import _MatchLogic
from operators.parse import RawLine
from operators.rows import MarketStatusRow
from operators.settings import DEFAULT_RULES
from tests.feedkit import KICKOFF, Feed


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def statuses(items: list[list[object]]) -> list[tuple[str, str, int]]:
    return [
        (r.status, r.reason, r.ts - KICKOFF)
        for out in items
        for r in out
        if isinstance(r, MarketStatusRow) and r.market == "1x2"
    ]


def test_silence_fires_from_the_wall_clock_and_a_line_ends_it() -> None:
    clock = FakeClock()
    logic = _MatchLogic(DEFAULT_RULES, clock, None)
    f = Feed().fixture().kick_off().clocks(4_000, 8_000)
    for i, line in enumerate(f.lines):
        logic.on_item(RawLine(f"t:{i}", line))
    # the last line (8 s) came now: silence is due 10 s of event time later
    assert logic.notify_at() == clock.now + timedelta(milliseconds=10_001)
    clock.now += timedelta(seconds=10, milliseconds=500)
    fired, _ = logic.on_notify()
    assert statuses(fired) == [("SUSPENDED", "feed_silent", 18_000)]
    assert logic.notify_at() is None  # nothing more is due until the feed comes back
    back, _ = logic.on_item(RawLine("t:x", f.add(21_000, "clock", minute=0, second=21)))
    assert statuses(back) == [("OPEN", "reopen", 21_000)]


def test_a_due_reopening_fires_without_waiting_for_the_next_line() -> None:
    clock = FakeClock()
    logic = _MatchLogic(DEFAULT_RULES, clock, None)
    f = Feed().fixture().kick_off().clocks(4_000, 8_000)
    f.add(9_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(10_000, "goal", goal_id="g1", team="home", state="confirmed")
    for i, line in enumerate(f.lines):
        logic.on_item(RawLine(f"t:{i}", line))
    assert logic.notify_at() == clock.now + timedelta(milliseconds=2_000)  # hold ends at 12 s
    clock.now += timedelta(seconds=2)
    fired, _ = logic.on_notify()
    assert statuses(fired) == [("OPEN", "reopen", 12_000)]


def test_replays_have_no_wall_clock_timers() -> None:
    logic = _MatchLogic(DEFAULT_RULES, None, None)
    for i, line in enumerate(Feed().fixture().kick_off().lines):
        logic.on_item(RawLine(f"t:{i}", line))
    assert logic.notify_at() is None


def test_the_snapshot_is_an_immutable_copy() -> None:
    logic = _MatchLogic(DEFAULT_RULES, None, None)
    f = Feed().fixture().kick_off()
    for i, line in enumerate(f.lines):
        logic.on_item(RawLine(f"t:{i}", line))
    snap = logic.snapshot()
    logic.on_item(RawLine("t:9", f.add(1_000, "card", team="home", player="x", color="red")))
    resumed = _MatchLogic(DEFAULT_RULES, None, snap)
    assert resumed.proc is not None and resumed.proc.match.home_red == 0  # type: ignore[union-attr]
