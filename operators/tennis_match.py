"""Tennis match state built from the feed: the score point by point, who serves, the serve
points each player has won, and how the match stopped (won, retired, walkover).

The score itself is `operators.tennis_score`'s; this module folds feed lines into it and
checks the provider's own `game_end` / `set_end` / `match_end` against the points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import (
    FOOTBALL_TYPES,
    Clock,
    FeedEvent,
    Fixture,
    GameEnd,
    MatchEnd,
    Point,
    Retirement,
    SetEnd,
    Suspension,
    Walkover,
)
from operators.rows import MatchRow, TennisScoreRow, new_row
from operators.tennis_score import PointResult, TennisFormat, TennisScore, play_point, start

SIDES = ("home", "away")
_CALLS = ("0", "15", "30", "40")


@dataclass(slots=True)
class TennisMatch:
    """One tennis match as the feed describes it; `apply` folds one validated line in.

    `status`: scheduled -> live (first point) <-> break (a suspension) -> ended
    (`match_end`). `stopped_by`: who retired or gave a walkover, "" when nobody did."""

    match_id: str
    provider: str
    home: str
    away: str
    kickoff: int
    fmt: TennisFormat
    first_server: int
    serve_prior: tuple[float | None, float | None]  # the fixture's, None: the tour's
    score: TennisScore = field(default_factory=TennisScore)
    status: str = "scheduled"
    minute: int = 0
    second: int = 0
    serve_won: list[int] = field(default_factory=lambda: [0, 0])  # serve points won, by player
    serve_played: list[int] = field(default_factory=lambda: [0, 0])
    last_point: PointResult | None = None  # what the last applied point finished
    last_game: tuple[int, tuple[int, int]] | None = None  # (winner, set's games after it)
    last_set: tuple[int, tuple[int, int], tuple[int, int]] | None = None  # (winner, sets, games)
    stopped_by: str = ""  # "home"/"away": retired or walkover
    walkover: bool = False
    score_version: int = 0  # of `tennis_scores` rows
    last_ts: int = 0

    max_minute = 1440  # class constant: clock minutes since the start (a day)
    sport = "tennis"

    @classmethod
    def from_fixture(cls, ev: Fixture) -> TennisMatch:
        first = 0 if ev.first_server == "home" else 1
        return cls(
            match_id=ev.match_id,
            provider=ev.provider,
            home=ev.home,
            away=ev.away,
            kickoff=ev.kickoff,
            fmt=TennisFormat(ev.best_of or 3, ev.final_set_tiebreak),
            first_server=first,
            serve_prior=(ev.home_serve, ev.away_serve),
            score=start(first),
            last_ts=ev.ts,
        )

    def blank_copy(self, provider: str, ts: int) -> TennisMatch:
        """The same fixture as another provider will report it, from the start."""
        return TennisMatch(
            self.match_id,
            provider,
            self.home,
            self.away,
            self.kickoff,
            self.fmt,
            self.first_server,
            self.serve_prior,
            score=start(self.first_server),
            last_ts=ts,
        )

    @property
    def in_play(self) -> bool:
        return self.status in ("live", "break")

    @property
    def over(self) -> bool:
        """No more points: won on points, retired, or a walkover."""
        return self.score.winner is not None or bool(self.stopped_by)

    @property
    def points_played(self) -> int:
        return self.serve_played[0] + self.serve_played[1]

    def scoreline(self) -> object:
        """What two providers must agree on."""
        return self.score, self.stopped_by

    # ---- checks ------------------------------------------------------------------------------

    def check(self, ev: FeedEvent) -> str | None:
        """The reject reason for a line this match cannot take now, None if it fits."""
        if type(ev) in FOOTBALL_TYPES:
            return "wrong_sport"
        if isinstance(ev, Point):
            return "match_over" if self.over else None
        if isinstance(ev, Walkover):
            return "match_started" if self.points_played or self.stopped_by else None
        if isinstance(ev, Retirement):
            if self.stopped_by or self.score.winner is not None:
                return "match_over"
            return None if self.points_played else "match_not_started"
        if isinstance(ev, MatchEnd) and not self.points_played and not self.walkover:
            return "match_not_started"
        return None

    def disagreement(self, ev: FeedEvent) -> str | None:
        """How the provider's `game_end` / `set_end` / `match_end` differs from the score the
        points made (the detail of a `score_mismatch`), None when they agree."""
        if isinstance(ev, GameEnd):
            said = (_index(ev.winner), (ev.home_games, ev.away_games))
            if said != self.last_game:
                return f"game_end {_game(said)}, from points {_game(self.last_game)}"
        elif isinstance(ev, SetEnd):
            told = (_index(ev.winner), (ev.home_sets, ev.away_sets), (ev.home_games, ev.away_games))
            if told != self.last_set:
                return f"set_end {_set(told)}, from points {_set(self.last_set)}"
        elif isinstance(ev, MatchEnd):
            sets = self.score.sets
            if (ev.home_score, ev.away_score) != sets:
                return f"official {ev.home_score}-{ev.away_score} sets, from points {_pair(sets)}"
            if not self.over:
                return f"match_end at {_pair(sets)} sets, but the points say the match goes on"
        return None

    # ---- folding lines in --------------------------------------------------------------------

    def apply(self, ev: FeedEvent) -> bool:
        """Fold `ev` in; True when a `matches` column changed (the `tennis_scores` row
        changes with every point, retirement, walkover and the end)."""
        self.last_ts = max(self.last_ts, ev.ts)
        if isinstance(ev, Clock):
            changed = ev.minute != self.minute
            self.minute, self.second = ev.minute, ev.second
            return changed
        if isinstance(ev, Point):
            return self._point(ev.won_by == "server")
        if isinstance(ev, Suspension):
            if self.status in ("live", "break"):
                self.status = "break" if ev.state == "start" else "live"
                return True
            return False
        if isinstance(ev, (Retirement, Walkover)):
            self.stopped_by = ev.player
            self.walkover = isinstance(ev, Walkover)
            self.score_version += 1
            return False
        if isinstance(ev, MatchEnd):
            self.status = "ended"
            self.score_version += 1
            return True
        return False

    def _point(self, server_won: bool) -> bool:
        """One point; True when it changed a `matches` column (a set won, play started)."""
        score = self.score
        server = score.server
        self.serve_played[server] += 1
        self.serve_won[server] += server_won
        result = self.last_point = play_point(score, self.fmt, server_won)
        self.score = result.score
        if result.game_won_by is not None:
            games = result.score.set_games[-1] if result.set_won_by is not None else None
            self.last_game = (result.game_won_by, games or result.score.games)
        if result.set_won_by is not None:
            after = result.score
            self.last_set = (result.set_won_by, after.sets, after.set_games[-1])
        self.score_version += 1
        if self.status == "scheduled":
            self.status = "live"
            return True
        return result.set_won_by is not None

    # ---- rows --------------------------------------------------------------------------------

    def row(self, ts: int) -> MatchRow:
        """The `matches` row: scores count sets, `period` is the set in play (0 before)."""
        sets = self.score.sets
        period = sets[0] + sets[1] + (self.score.winner is None) if self.points_played else 0
        return new_row(
            MatchRow,
            (
                self.match_id,
                self.home,
                self.away,
                self.kickoff,
                period,
                self.minute,
                sets[0],
                sets[1],
                0,
                0,
                self.status,
                ts,
            ),
        )

    def score_row(self, ts: int) -> TennisScoreRow:
        """The `tennis_scores` row: the whole score as a tennis scoreboard shows it."""
        s = self.score
        return TennisScoreRow(
            match_id=self.match_id,
            version=self.score_version,
            best_of=self.fmt.best_of,
            final_set_tiebreak=self.fmt.final_set_tiebreak,
            server=SIDES[s.server],
            home_sets=s.sets[0],
            away_sets=s.sets[1],
            home_games=s.games[0],
            away_games=s.games[1],
            points=point_call(s, self.fmt),
            set_scores=" ".join(_pair(games) for games in s.set_games),
            points_played=self.points_played,
            result=self.result(),
            ts=ts,
        )

    def result(self) -> str:
        """ "" while play goes on; "home"/"away" (the winner), "retired:<side>" or
        "walkover:<side>" (the side that stopped)."""
        if self.stopped_by:
            return f"{'walkover' if self.walkover else 'retired'}:{self.stopped_by}"
        winner = self.score.winner
        return "" if winner is None else SIDES[winner]


def point_call(score: TennisScore, fmt: TennisFormat) -> str:
    """The points of the game in play as the umpire calls them, home first: "15-30",
    "40-AD", "40-40"; a tiebreak's as counts ("5-4")."""
    home, away = score.points
    if score.in_tiebreak(fmt) or (home, away) == (0, 0):
        return f"{home}-{away}"
    if home >= 3 and away >= 3:
        return "40-40" if home == away else "AD-40" if home > away else "40-AD"
    return f"{_CALLS[home]}-{_CALLS[away]}"


def _index(side: str) -> int:
    return 0 if side == "home" else 1


def _pair(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


def _game(said: tuple[int, tuple[int, int]] | None) -> str:
    if said is None:
        return "no game finished"
    return f"{SIDES[said[0]]} to {_pair(said[1])}"


def _set(told: tuple[int, tuple[int, int], tuple[int, int]] | None) -> str:
    if told is None:
        return "no set finished"
    return f"{SIDES[told[0]]} {_pair(told[2])} for {_pair(told[1])} sets"
