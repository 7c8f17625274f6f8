"""Hand-written tennis scenarios through the whole engine (`LocalEngine`): incidents, the
score's checks, decided markets, retirement rules, and bets on tennis markets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from operators.rows import BetRow, MarketStatusRow, MatchRow, PriceRow, Reject, Row, TennisScoreRow
from operators.tennis_score import TennisFormat, play_point, start
from tests.feedkit import KICKOFF, Feed, run

SIDES = ("home", "away")
HOLD_SERVE = "SSSS"  # the server wins a game to love
BREAK = "RRRR"


class TennisFeed(Feed):
    """A tennis match's lines; `play` adds points (S/A server won, R/D receiver won) every
    `every` ms, each game's and set's `game_end` / `set_end` after its last point, as a
    provider sends them."""

    def __init__(self, best_of: int = 3, final_set_tiebreak: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.fmt = TennisFormat(best_of, final_set_tiebreak)
        self.score = start(0)
        self.t = 0

    def fixture(self, home_rate: float = 0.0, away_rate: float = 0.0) -> TennisFeed:
        self.add(
            -600_000,
            "fixture",
            sport="tennis",
            home="R. Nadal",
            away="R. Federer",
            kickoff=self.kickoff,
            best_of=self.fmt.best_of,
            first_server="home",
            final_set_tiebreak=self.fmt.final_set_tiebreak,
        )
        return self

    def play(self, points: str, every: int = 5_000) -> TennisFeed:
        for char in points:
            self.t += every
            detail = {"A": {"detail": "ace"}, "D": {"detail": "double_fault"}}.get(char, {})
            won_by = "server" if char in "SA" else "receiver"
            self.add(self.t, "point", won_by=won_by, **detail)
            result = play_point(self.score, self.fmt, won_by == "server")
            self.score = after = result.score
            if result.game_won_by is not None:
                games = after.set_games[-1] if result.set_won_by is not None else after.games
                self.add(
                    self.t,
                    "game_end",
                    winner=SIDES[result.game_won_by],
                    home_games=games[0],
                    away_games=games[1],
                )
            if result.set_won_by is not None:
                games = after.set_games[-1]
                self.add(
                    self.t,
                    "set_end",
                    winner=SIDES[result.set_won_by],
                    home_sets=after.sets[0],
                    away_sets=after.sets[1],
                    home_games=games[0],
                    away_games=games[1],
                )
        return self

    def games(self, *winners: int) -> TennisFeed:
        """Whole games to love, each won by player `w` (0 home, 1 away)."""
        for w in winners:
            self.play(HOLD_SERVE if self.score.server == w else BREAK)
        return self

    def at(self, dt: int, type: str, **fields: Any) -> TennisFeed:
        """A line `dt` ms after the last one."""
        self.t += dt
        self.add(self.t, type, **fields)
        return self


def statuses(rows: list[Row], market: str) -> list[tuple[str, str]]:
    """(status, reason) of every version of `market` that is not a repricing."""
    return [
        (r.status, r.reason)
        for r in rows
        if isinstance(r, MarketStatusRow) and r.market == market and r.reason != "point"
    ]


def settled(rows: list[Row]) -> dict[str, str | None]:
    return {
        r.market: r.winner for r in rows if isinstance(r, MarketStatusRow) and r.status == "SETTLED"
    }


def last_score(rows: list[Row]) -> TennisScoreRow:
    return [r for r in rows if isinstance(r, TennisScoreRow)][-1]


def rejects(rows: list[Row]) -> list[tuple[str, str]]:
    return [(r.reason, r.detail) for r in rows if isinstance(r, Reject)]


def started() -> TennisFeed:
    return TennisFeed().fixture()


def test_fixture_opens_the_tennis_markets_priced() -> None:
    rows = run(started().lines)
    opened = {r.market for r in rows if isinstance(r, MarketStatusRow) and r.status == "OPEN"}
    assert opened == {
        "match",
        "set_1",
        "game_1_1",
        "games_ou_19.5",
        "games_ou_21.5",
        "games_ou_23.5",
        "set_betting",
    }
    prices = {(r.market, r.selection) for r in rows if isinstance(r, PriceRow)}
    assert ("set_betting", "2-1") in prices and ("match", "away") in prices
    match = [r for r in rows if isinstance(r, MatchRow)][-1]
    assert (match.status, match.period, match.home_score, match.away_score) == (
        "scheduled",
        0,
        0,
        0,
    )
    assert last_score(rows).server == "home" and last_score(rows).points == "0-0"


def test_a_game_won_closes_its_market_and_opens_the_next() -> None:
    f = started().play("SSRSS")  # 15-0 30-0 30-15 40-15 game home
    rows = run(f.lines)
    assert statuses(rows, "game_1_1") == [("OPEN", "fixture"), ("CLOSED", "decided")]
    opened = [r for r in rows if isinstance(r, MarketStatusRow) and r.market == "game_1_2"]
    assert [(r.version, r.status, r.reason) for r in opened] == [(1, "OPEN", "point")]
    assert opened[0].ts == KICKOFF + 25_000
    won = [r for r in rows if isinstance(r, MarketStatusRow) and r.market == "game_1_1"][-1]
    assert won.ts == KICKOFF + 25_000
    score = last_score(rows)
    assert (score.home_games, score.away_games, score.server, score.points) == (1, 0, "away", "0-0")
    # the match market moved with the points, one version per moved price
    match_versions = [
        r.version for r in rows if isinstance(r, MarketStatusRow) and r.market == "match"
    ]
    assert match_versions == list(range(1, len(match_versions) + 1))
    assert len(match_versions) > 1


def test_challenge_suspends_every_market_and_reopens_after_the_minimum() -> None:
    f = started().play("SS").at(2_000, "challenge", state="start", player="away")
    f.at(1_000, "challenge", state="end", player="away").play("S")
    rows = run(f.lines)
    for market in ("match", "set_1", "game_1_1", "set_betting"):
        assert statuses(rows, market) == [
            ("OPEN", "fixture"),
            ("SUSPENDED", "challenge"),
            ("OPEN", "reopen"),
        ], market
    reopen = next(r for r in rows if isinstance(r, MarketStatusRow) and r.reason == "reopen")
    assert reopen.ts - KICKOFF == 12_000 + 3_000  # the hold: min_suspension_ms from the start


def test_rain_suspension_holds_through_heartbeats_then_reopens() -> None:
    f = started().play("SSSS").at(1_000, "suspension", state="start", reason="rain")
    for _ in range(24):  # two minutes of heartbeats while it rains
        f.at(5_000, "clock", minute=f.t // 60_000, second=(f.t // 1000) % 60)
    f.at(5_000, "suspension", state="end", reason="rain").play("S")
    rows = run(f.lines)
    assert statuses(rows, "match") == [
        ("OPEN", "fixture"),
        ("SUSPENDED", "suspension"),
        ("OPEN", "reopen"),
    ]
    states = [r.status for r in rows if isinstance(r, MatchRow)]
    assert "break" in states and states[-1] == "live"


def test_provider_silence_suspends_and_the_next_line_reopens() -> None:
    f = started().play("SS").play("S", every=15_000).play("S")
    rows = run(f.lines)
    assert statuses(rows, "match") == [
        ("OPEN", "fixture"),
        ("SUSPENDED", "feed_silent"),
        ("OPEN", "reopen"),
    ]


def test_medical_timeout_suspends() -> None:
    f = started().play("SS").at(1_000, "medical_timeout", state="start", player="home")
    f.at(180_000, "medical_timeout", state="end", player="home")
    rows = run(f.lines)
    # 180 s without a line in between: provider silence too; both end at the last line
    assert statuses(rows, "set_1")[:2] == [("OPEN", "fixture"), ("SUSPENDED", "medical_timeout")]
    assert statuses(rows, "set_1")[-1] == ("OPEN", "reopen")


def test_tiebreak_counts_as_a_game_and_closes_the_set() -> None:
    f = started().games(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)  # 6-6: each holds serve
    assert f.score.games == (6, 6) and f.score.in_tiebreak(f.fmt)
    # tiebreak: home serves point 1, away 2-3, home 4-5, ...; won by home, away, away, home,
    # home, away, away, home, home, home, away, home: 7-5 (one return won, at 5-4)
    f.play("SSSSSSSSSRSS")
    rows = run(f.lines)
    assert rejects(rows) == []
    scores = [r for r in rows if isinstance(r, TennisScoreRow)]
    in_tiebreak = [r.points for r in scores if (r.home_games, r.away_games) == (6, 6)]
    assert in_tiebreak[:4] == ["0-0", "1-0", "1-1", "1-2"]  # counted, not called
    assert [r.server for r in scores if (r.home_games, r.away_games) == (6, 6)][1:6] == [
        "away",
        "away",
        "home",
        "home",
        "away",
    ]
    assert statuses(rows, "set_1")[-1] == ("CLOSED", "decided")
    assert statuses(rows, "game_1_13")[-1] == ("CLOSED", "decided")
    assert "set_2" in {r.market for r in rows if isinstance(r, MarketStatusRow)}
    last = last_score(rows)
    assert (last.home_sets, last.away_sets, last.set_scores) == (1, 0, "7-6")


def test_final_set_without_a_tiebreak_goes_on_to_two_clear() -> None:
    f = TennisFeed(final_set_tiebreak=False).fixture()
    f.games(*[0] * 6).games(*[1] * 6)  # 6-0 0-6
    f.games(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)  # 6-6 in the final set: no tiebreak
    f.games(0, 1, 0, 0)  # 7-6 7-7 8-7... home breaks and holds: 9-7
    f.at(1_000, "match_end", home_score=2, away_score=1)
    rows = run(f.lines)
    assert rejects(rows) == []
    final = last_score(rows)
    assert (final.set_scores, final.result) == ("6-0 0-6 9-7", "home")
    match = [r for r in rows if isinstance(r, MatchRow)]
    assert [(r.period, r.home_score, r.away_score, r.status) for r in match] == [
        (0, 0, 0, "scheduled"),  # the fixture
        (1, 0, 0, "live"),  # the first point
        (2, 1, 0, "live"),  # a set won: sets count as the score
        (3, 1, 1, "live"),
        (3, 2, 1, "live"),  # the last point
        (3, 2, 1, "ended"),  # match_end
    ]
    won = settled(rows)
    assert won["match"] == "home" and won["set_betting"] == "2-1"
    assert won["set_3"] == "home" and won["games_ou_23.5"] == "over"
    assert won["games_ou_19.5"] == "over"


def test_game_end_disagreeing_with_the_points_is_a_score_mismatch() -> None:
    f = started().play("SSS")
    f.at(100, "game_end", winner="home", home_games=1, away_games=0)  # the points say 40-0
    f.play("S")
    rows = run(f.lines)
    assert rejects(rows) == [
        ("score_mismatch", "game_end home to 1-0, from points no game finished")
    ]
    assert last_score(rows).home_games == 1  # the points go on counting
    f = started().games(0).play("SSSS")
    f.at(100, "set_end", winner="away", home_sets=0, away_sets=1, home_games=6, away_games=4)
    assert rejects(run(f.lines)) == [
        ("score_mismatch", "set_end away 6-4 for 0-1 sets, from points no set finished")
    ]


def test_match_end_disagreeing_with_the_points_is_rejected_and_settles_nothing() -> None:
    f = started().games(*[0] * 12).at(1_000, "match_end", home_score=2, away_score=1)
    rows = run(f.lines)
    assert rejects(rows) == [("score_mismatch", "official 2-1 sets, from points 2-0")]
    assert settled(rows) == {}


def test_retirement_after_a_set_match_to_the_other_player_undecided_void() -> None:
    f = started().games(*[0] * 6).games(1, 0, 1)  # 6-0, 1-2
    f.at(10_000, "retirement", player="away").at(5_000, "match_end", home_score=1, away_score=0)
    rows = run(f.lines)
    assert statuses(rows, "set_2")[-2:] == [("CLOSED", "retirement"), ("SETTLED", "match_end")]
    assert settled(rows) == {
        **{f"game_1_{g}": "home" for g in range(1, 7)},
        "game_2_1": "away",
        "game_2_2": "home",
        "game_2_3": "away",
        "game_2_4": "void",
        "set_1": "home",
        "set_2": "void",
        "match": "home",
        "set_betting": "void",
        "games_ou_19.5": "void",
        "games_ou_21.5": "void",
        "games_ou_23.5": "void",
    }
    assert last_score(rows).result == "retired:away"


def test_retirement_before_a_set_is_completed_voids_the_match() -> None:
    f = started().games(0, 0).at(10_000, "retirement", player="home")
    f.at(5_000, "match_end", home_score=0, away_score=0)
    won = settled(run(f.lines))
    assert won["match"] == "void" and won["game_1_1"] == "home"


def test_walkover_voids_everything_and_refuses_points() -> None:
    f = started().at(0, "walkover", player="away").play("S")
    f.at(1_000, "match_end", home_score=0, away_score=0)
    rows = run(f.lines)
    assert rejects(rows)[0][0] == "match_over"
    assert set(settled(rows).values()) == {"void"}
    assert last_score(rows).result == "walkover:away"


def test_football_lines_on_a_tennis_match_are_wrong_sport() -> None:
    f = started().play("S")
    f.at(1_000, "goal", goal_id="g1", team="home", state="possible")
    assert [r[0] for r in rejects(run(f.lines))] == ["wrong_sport"]
    football = Feed().fixture().kick_off()
    football.add(1_000, "point", won_by="server")
    football.add(2_000, "clock", minute=201, second=0)  # football's clock stops at 200
    assert [r[0] for r in rejects(run(football.lines))] == ["wrong_sport", "invalid_field:minute"]


def _offered(rows: list[Row], market: str, selection: str) -> Decimal:
    return [
        r.price
        for r in rows
        if isinstance(r, PriceRow) and (r.market, r.selection) == (market, selection)
    ][-1]


def _bet(bet_id: str, t: int, market: str, selection: str, price: Decimal) -> bytes:
    return msgspec.json.encode(
        {
            "v": 1,
            "ts": KICKOFF + t,
            "type": "bet",
            "bet_id": bet_id,
            "user_id": "u1",
            "match_id": "m1",
            "market": market,
            "selection": selection,
            "stake": "10.00",
            "price": str(price),
        }
    )


DEPOSIT = b'{"v":1,"ts":%d,"type":"deposit","user_id":"u1","amount":"100.00"}'


def test_bets_on_tennis_markets_are_judged_delayed_and_settled() -> None:
    deposit = DEPOSIT % (KICKOFF - 700_000)
    f = started()
    before = run(f.lines)
    pre = _bet("b1", -60_000, "match", "home", _offered(before, "match", "home"))
    f.lines.append(pre)
    f.play("SS")
    so_far = run([deposit, *f.lines])
    game = _bet("b2", f.t + 1_000, "game_1_1", "home", _offered(so_far, "game_1_1", "home"))
    f.lines.append(game)  # in play: held 5 s, and a point comes before then
    f.play("S", every=2_000).play("S", every=4_000)  # the game ends inside b2's delay
    f.lines.append(_bet("b3", f.t + 1_000, "set_1", "away", Decimal("1000.00")))  # asks too much
    f.games(*[0] * 11)
    f.at(1_000, "match_end", home_score=2, away_score=0)
    rows = run([deposit, *f.lines])
    bets = {r.bet_id: (r.status, r.reason) for r in rows if isinstance(r, BetRow)}
    assert bets == {
        "b1": ("won", ""),
        "b2": ("rejected", "bet_delay_suspension"),
        "b3": ("rejected", "price_changed"),
    }


def test_a_backup_provider_takes_over_a_silent_one() -> None:
    main = started().play("SS")  # points at 5 s and 10 s, then silence
    backup = TennisFeed(provider="backup").play("SS")  # the same points
    backup.play("SSSSSS")  # and six more, every 5 s: past 20 s the main one is silent
    rows = run(
        sorted([*main.lines, *backup.lines], key=lambda line: msgspec.json.decode(line)["ts"])
    )
    # suspended while the backup is ahead of the silent main provider; it drives from its
    # line at 25 s (15 s after main's last), and the markets reopen 3 s after the switch
    reopened = [
        r.ts - KICKOFF
        for r in rows
        if isinstance(r, MarketStatusRow) and r.market == "match" and r.reason == "reopen"
    ]
    assert reopened == [13_000, 28_000]
    switch = next(r for r in rows if isinstance(r, TennisScoreRow) and r.ts == KICKOFF + 25_000)
    assert (switch.home_games, switch.points, switch.points_played) == (1, "0-15", 5)
    last = last_score(rows)
    assert (last.home_games, last.away_games, last.points_played) == (1, 1, 8)
    assert last.ts == KICKOFF + 40_000
