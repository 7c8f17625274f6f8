"""Hand-written match scenarios: the expected market history of each, written out."""

from __future__ import annotations

from decimal import Decimal

from operators.market_events import (
    MarketClosed,
    MarketReopened,
    MarketRepriced,
    MarketSettled,
    MarketSuspended,
    project,
)
from operators.markets import Market
from operators.rows import MarketStatusRow, PriceRow, Reject
from tests.feedkit import Feed, history, run

PRE = -600_000  # the fixture's time, 10 minutes before kickoff


def started() -> Feed:
    return Feed().fixture().kick_off()


def test_goal_then_var_disallow() -> None:
    f = started().clocks(4_000, 26_000)
    f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(31_000, "var", state="start", reason="goal_check")
    f.clocks(32_000, 32_000)
    f.add(34_000, "var", state="end", reason="goal_check")
    f.add(34_500, "goal", goal_id="g1", team="home", state="disallowed")
    f.clocks(36_000, 40_000)
    rows = run(f.lines)
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 34_500),
    ]
    assert history(rows, "ou_0.5") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 34_500),
    ]


def test_penalty_awarded_then_missed_holds_the_minimum() -> None:
    f = started().clocks(4_000, 26_000)
    f.add(30_000, "penalty", team="away", state="awarded")
    f.add(31_000, "penalty", team="away", state="missed")
    f.clocks(32_000, 36_000)
    rows = run(f.lines)
    # Resolved at 31 s, but the suspension lasts min_suspension_ms (3 s): reopens at 33 s,
    # found due by the heartbeat at 36 s, stamped with the time it fell due.
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "penalty_awarded", 30_000),
        (3, "OPEN", "reopen", 33_000),
    ]


def test_red_card_and_goal_in_the_same_minute() -> None:
    f = started().clocks(4_000, 26_000)
    f.add(30_000, "card", team="home", player="Lenglet", color="red")
    f.add(31_000, "goal", goal_id="g1", team="away", state="possible")
    f.add(35_000, "goal", goal_id="g1", team="away", state="confirmed")
    f.clocks(36_000, 40_000)
    rows = run(f.lines)
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "red_card", 30_000),
        (3, "OPEN", "reopen", 35_000),
    ]
    assert history(rows, "ou_0.5") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "red_card", 30_000),
        (3, "CLOSED", "decided", 35_000),
    ]
    assert history(rows, "goal_1") == history(rows, "ou_0.5")
    assert history(rows, "goal_2") == [
        (1, "SUSPENDED", "goal_confirmed", 35_000),
        (2, "OPEN", "reopen", 35_000),
    ]
    reopened = {
        r.selection: r.price
        for r in rows
        if isinstance(r, PriceRow) and r.market == "1x2" and r.version == 3
    }
    before = {
        r.selection: r.price
        for r in rows
        if isinstance(r, PriceRow) and r.market == "1x2" and r.version == 1
    }
    assert reopened["away"] < before["away"] and reopened["home"] > before["home"]


def test_goal_confirmed_then_disallowed_after_the_reopening() -> None:
    f = started().clocks(4_000, 26_000)
    f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(32_000, "goal", goal_id="g1", team="home", state="confirmed")
    f.clocks(34_000, 38_000)
    f.add(40_000, "goal", goal_id="g1", team="home", state="disallowed")
    f.clocks(42_000, 46_000)
    f.add(48_000, "match_end", home_score=0, away_score=0)
    rows = run(f.lines)
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 33_000),
        (4, "SUSPENDED", "goal_disallowed", 40_000),
        (5, "OPEN", "reopen", 43_000),
        (6, "CLOSED", "match_end", 48_000),
        (7, "SETTLED", "match_end", 48_000),
    ]
    assert history(rows, "ou_0.5") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "CLOSED", "decided", 32_000),
        (4, "SUSPENDED", "goal_disallowed", 40_000),
        (5, "OPEN", "reopen", 43_000),
        (6, "CLOSED", "match_end", 48_000),
        (7, "SETTLED", "match_end", 48_000),
    ]
    assert history(rows, "goal_2") == [
        (1, "SUSPENDED", "goal_confirmed", 32_000),
        (2, "OPEN", "reopen", 33_000),
        (3, "SUSPENDED", "goal_disallowed", 40_000),
        (4, "CLOSED", "match_end", 48_000),
        (5, "SETTLED", "match_end", 48_000),
    ]
    winners = {
        r.market: r.winner for r in rows if isinstance(r, MarketStatusRow) and r.status == "SETTLED"
    }
    assert winners["1x2"] == "draw" and winners["ou_0.5"] == "under"
    assert winners["goal_1"] == "none" and winners["goal_2"] == "none"


def test_two_overlapping_incidents_reopen_only_when_both_end() -> None:
    f = started().clocks(4_000, 26_000)
    f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(31_000, "var", state="start", reason="penalty_check")
    f.add(32_000, "goal", goal_id="g1", team="home", state="confirmed")
    f.clocks(35_000, 35_000)
    f.add(38_000, "var", state="end", reason="penalty_check")
    f.clocks(40_000, 40_000)
    rows = run(f.lines)
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 38_000),
    ]


def test_provider_silent_then_back() -> None:
    f = started().clocks(4_000, 28_000)
    f.clocks(45_000, 49_000)
    rows = run(f.lines)
    # Silent after 28 s: after heartbeat_timeout_ms (10 s) of event time the markets
    # suspend at 38 s; the line at 45 s ends it (hold already over): reopen at 45 s.
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "feed_silent", 38_000),
        (3, "OPEN", "reopen", 45_000),
    ]


def test_duplicate_and_late_lines_around_a_goal() -> None:
    f = started().clocks(4_000, 26_000)
    possible = f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.lines.append(possible)  # the provider sends it twice
    late = f.add(31_000, "foul", team="away", player="X")
    f.lines.pop()
    f.add(32_000, "goal", goal_id="g1", team="home", state="confirmed")
    f.lines.append(late)  # arrives after its successor: out of order
    f.clocks(34_000, 38_000)
    rows = run(f.lines)
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 33_000),
    ]
    assert [r.reason for r in rows if isinstance(r, Reject)] == ["duplicate", "out_of_order"]


def test_every_reopening_carries_prices_of_its_version() -> None:
    f = started().clocks(4_000, 96_000)
    f.add(100_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(102_000, "goal", goal_id="g1", team="home", state="confirmed")
    f.clocks(104_000, 300_000)
    rows = run(f.lines)
    priced = {(r.market, r.version) for r in rows if isinstance(r, PriceRow)}
    opened = [
        (r.market, r.version) for r in rows if isinstance(r, MarketStatusRow) and r.status == "OPEN"
    ]
    assert opened and all(key in priced for key in opened)
    # Time decay: prices recomputed every match minute, published when an offer moves.
    repriced_at = {r.ts for r in rows if isinstance(r, MarketStatusRow) and r.reason == "reprice"}
    assert len(repriced_at) >= 3


def _two_providers() -> tuple[Feed, Feed]:
    primary = Feed().fixture().kick_off()
    backup = Feed(provider="scout-b")
    backup.add(
        -500_000,
        "fixture",
        home="Home FC",
        away="Away FC",
        kickoff=backup.kickoff,
        home_rate=1.5,
        away_rate=1.1,
    )
    backup.add(1, "period_start", period=1)
    return primary, backup


def _by_time(*feeds: Feed) -> list[bytes]:
    import heapq
    import json

    return list(heapq.merge(*(f.lines for f in feeds), key=lambda line: json.loads(line)["ts"]))


def test_the_backup_provider_drives_when_the_primary_goes_silent() -> None:
    primary, backup = _two_providers()
    primary.clocks(4_000, 28_000)  # then nothing more from the primary
    backup.clocks(2_000, 46_000)
    backup.add(50_000, "goal", goal_id="b1", team="away", state="possible")
    backup.add(52_000, "goal", goal_id="b1", team="away", state="confirmed")
    backup.clocks(54_000, 58_000)
    rows = run(_by_time(primary, backup))
    # Primary silent after 28 s: suspended at 38 s; the backup's line at 42 s takes over
    # (suspend for the switch, hold 3 s): reopen at 45 s; its goal then drives the markets.
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "feed_silent", 38_000),
        (3, "OPEN", "reopen", 45_000),
        (4, "SUSPENDED", "goal_possible", 50_000),
        (5, "OPEN", "reopen", 53_000),
    ]
    last = [r for r in rows if type(r).__name__ == "MatchRow"][-1]
    assert (last.home_score, last.away_score) == (0, 1)


def test_providers_disagreeing_on_the_score_suspend_until_they_agree() -> None:
    primary, backup = _two_providers()
    primary.clocks(4_000, 28_000)
    backup.clocks(2_000, 26_000)
    primary.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    primary.add(31_000, "goal", goal_id="g1", team="home", state="confirmed")
    primary.clocks(32_000, 56_000)
    backup.clocks(30_000, 38_000)
    backup.add(40_000, "goal", goal_id="x", team="home", state="possible")
    backup.add(41_000, "goal", goal_id="x", team="home", state="confirmed")
    backup.clocks(42_000, 46_000)
    backup.add(50_000, "goal", goal_id="y", team="away", state="possible")
    backup.add(51_000, "goal", goal_id="y", team="away", state="confirmed")  # only the backup
    backup.clocks(52_000, 56_000)
    rows = run(_by_time(primary, backup))
    assert history(rows, "1x2") == [
        (1, "OPEN", "fixture", PRE),
        (2, "SUSPENDED", "goal_possible", 30_000),
        (3, "OPEN", "reopen", 41_000),  # held by provider_conflict from 31 s until 41 s
        (4, "SUSPENDED", "provider_conflict", 51_000),
    ]


def test_market_events_project_onto_their_rows_in_order() -> None:
    """A market's moves as events, and the rows `project` makes of them where output
    leaves the match: other items pass through in place."""
    market, events = Market("m", "1x2"), []
    prices = {"home": (0.5, Decimal("1.9")), "draw": (0.3, Decimal("3.2"))}
    market.move("OPEN", "fixture", 1, events, prices)
    market.move("OPEN", "reprice", 2, events, {"home": (0.6, Decimal("1.6"))})
    market.move("SUSPENDED", "var", 3, events)
    market.move("CLOSED", "match_end", 4, events)
    market.move("SETTLED", "match_end", 4, events, winner="home")
    assert [type(e) for e in events] == [
        MarketReopened,
        MarketRepriced,
        MarketSuspended,
        MarketClosed,
        MarketSettled,
    ]
    other = Reject("s", "r", "d", "raw", None, None, None)
    assert project([other, *events], []) == [
        other,
        MarketStatusRow("m", "1x2", "OPEN", 1, "fixture", 1, None),
        PriceRow("m", "1x2", 1, "home", 0.5, Decimal("1.9"), 1),
        PriceRow("m", "1x2", 1, "draw", 0.3, Decimal("3.2"), 1),
        MarketStatusRow("m", "1x2", "OPEN", 2, "reprice", 2, None),
        PriceRow("m", "1x2", 2, "home", 0.6, Decimal("1.6"), 2),
        MarketStatusRow("m", "1x2", "SUSPENDED", 3, "var", 3, None),
        MarketStatusRow("m", "1x2", "CLOSED", 4, "match_end", 4, None),
        MarketStatusRow("m", "1x2", "SETTLED", 5, "match_end", 4, "home"),
    ]
