"""The native feed model, version 1 (documented in docs/feed-format.md), as msgspec structs.

One struct per line type, tagged by the `type` field, so a single decoder turns a JSON line
into the right struct and names the field when a line is wrong. Unknown extra fields are
ignored (providers may add fields); missing or wrongly typed ones are errors.

Two sports share the one union: the fixture's `sport` (default football) says which. Tennis
matches use `point`, `game_end`, `set_end`, `challenge`, `medical_timeout`, `suspension`,
`retirement` and `walkover`, plus the common `clock` and `match_end` (whose scores count
sets); football matches the rest. Which lines fit which sport is `operators.validate`'s job.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]  # fits BIGINT with room to add
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
Period = Annotated[int, msgspec.Meta(ge=1, le=4)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=20.0)]
Minute = Annotated[int, msgspec.Meta(ge=0, le=1440)]  # football: 200 at most (validate.py)
FOOTBALL_MAX_MINUTE = 200
Second = Annotated[int, msgspec.Meta(ge=0, le=59)]
Goals = Annotated[int, msgspec.Meta(ge=0, le=99)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Team = Literal["home", "away"]
Sport = Literal["football", "tennis"]
Games = Annotated[int, msgspec.Meta(ge=0, le=999)]  # a final set without a tiebreak: 70-68
Sets = Annotated[int, msgspec.Meta(ge=0, le=3)]
ServeWin = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]  # a serve-point win probability
NO_RATE = -1.0  # `Fixture.home_rate`/`away_rate` absent (tennis): never a valid rate


MAX_MONEY = Decimal("1000000000.00")  # a deposit or stake; balances stay within DECIMAL(14, 2)
MAX_PRICE = Decimal("1000.00")  # the top of the Betfair ladder
_CENT = Decimal("0.01")


def _check_amount(field: str, value: Decimal, minimum: Decimal, maximum: Decimal) -> None:
    if not value.is_finite() or not minimum <= value <= maximum:
        raise ValueError(f"`{field}` must be a decimal from {minimum} to {maximum}, got {value}")
    if value != value.quantize(_CENT):
        raise ValueError(f"`{field}` has more than 2 decimal places: {value}")


class FeedEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields common to every feed line; `type` is the tag that picks the subclass."""

    v: Literal[1]
    provider: Name
    match_id: Name
    seq: Seq
    ts: NonNegInt


class Fixture(FeedEvent, tag="fixture", frozen=True):
    """A match's first line. Football needs `home_rate`/`away_rate` (expected goals);
    tennis (`sport: "tennis"`, `home`/`away` the two players) needs `best_of` and
    `first_server`, and may give each player's serve-point win probability."""

    home: Name
    away: Name
    kickoff: NonNegInt
    home_rate: Rate = NO_RATE  # required for football: see __post_init__
    away_rate: Rate = NO_RATE
    sport: Sport = "football"
    best_of: Literal[3, 5] | None = None
    first_server: Team | None = None
    final_set_tiebreak: bool = True
    home_serve: ServeWin | None = None
    away_serve: ServeWin | None = None

    def __post_init__(self) -> None:
        if self.sport == "tennis":
            _require(self, "best_of", "first_server")
            return
        _require(self, "home_rate", "away_rate")
        if not (math.isfinite(self.home_rate) and math.isfinite(self.away_rate)):
            raise ValueError("`home_rate`/`away_rate` must be finite")


def _require(fixture: Fixture, *names: str) -> None:
    """A sport's required fields, refused as msgspec refuses a missing field."""
    for name in names:
        if getattr(fixture, name) in (None, NO_RATE):
            raise ValueError(f"Object missing required field `{name}`")


class PeriodStart(FeedEvent, tag="period_start", frozen=True):
    period: Period


class PeriodEnd(FeedEvent, tag="period_end", frozen=True):
    period: Period


class Goal(FeedEvent, tag="goal", frozen=True):
    goal_id: Name
    team: Team
    state: Literal["possible", "confirmed", "disallowed"]


class Penalty(FeedEvent, tag="penalty", frozen=True):
    team: Team
    state: Literal["awarded", "scored", "missed"]


class Card(FeedEvent, tag="card", frozen=True):
    team: Team
    player: Name
    color: Literal["yellow", "red", "second_yellow"]


class Var(FeedEvent, tag="var", frozen=True):
    state: Literal["start", "end"]
    reason: str = ""


class Substitution(FeedEvent, tag="substitution", frozen=True):
    team: Team
    player: str = ""
    player_out: str = ""


class Foul(FeedEvent, tag="foul", frozen=True):
    team: Team
    player: str = ""


class Corner(FeedEvent, tag="corner", frozen=True):
    team: Team
    player: str = ""


class Clock(FeedEvent, tag="clock", frozen=True):
    minute: Minute
    second: Second


class MatchEnd(FeedEvent, tag="match_end", frozen=True):
    """The official result: goals in football, sets in tennis."""

    home_score: Goals
    away_score: Goals


# ---- tennis ----------------------------------------------------------------------------------


class Point(FeedEvent, tag="point", frozen=True):
    """One point, won by the player serving it or by the receiver."""

    won_by: Literal["server", "receiver"]
    detail: Literal["ace", "double_fault"] | None = None

    def __post_init__(self) -> None:
        if self.detail is not None and _WON_BY[self.detail] != self.won_by:
            raise ValueError(f"`detail` {self.detail} does not fit a point won by {self.won_by}")


_WON_BY = {"ace": "server", "double_fault": "receiver"}


class GameEnd(FeedEvent, tag="game_end", frozen=True):
    """The provider's own end of a game: a check on the points (games in the set after it)."""

    winner: Team
    home_games: Games
    away_games: Games


class SetEnd(FeedEvent, tag="set_end", frozen=True):
    """The provider's own end of a set: sets after it, and the set's games."""

    winner: Team
    home_sets: Sets
    away_sets: Sets
    home_games: Games
    away_games: Games


class Challenge(FeedEvent, tag="challenge", frozen=True):
    """A player's challenge of a line call (electronic review), `start` then `end`."""

    state: Literal["start", "end"]
    player: Team


class MedicalTimeout(FeedEvent, tag="medical_timeout", frozen=True):
    state: Literal["start", "end"]
    player: Team


class Suspension(FeedEvent, tag="suspension", frozen=True):
    """Play stopped (rain, light, ...), `start` then `end`."""

    state: Literal["start", "end"]
    reason: str = ""


class Retirement(FeedEvent, tag="retirement", frozen=True):
    """`player` retires during the match; the `match_end` that follows settles it."""

    player: Team


class Walkover(FeedEvent, tag="walkover", frozen=True):
    """`player` does not play: before the first point; the `match_end` that follows settles."""

    player: Team


class Deposit(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="deposit", gc=False):
    v: Literal[1]
    ts: NonNegInt
    user_id: Name
    amount: Decimal

    def __post_init__(self) -> None:
        _check_amount("amount", self.amount, Decimal("0.01"), MAX_MONEY)


class Bet(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="bet", gc=False):
    v: Literal[1]
    ts: NonNegInt
    bet_id: Name
    user_id: Name
    match_id: Name
    market: Name
    selection: Name
    stake: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        _check_amount("stake", self.stake, Decimal("0.01"), MAX_MONEY)
        _check_amount("price", self.price, Decimal("1.01"), MAX_PRICE)


FEED_TYPES: tuple[type[FeedEvent], ...] = (
    Fixture,
    PeriodStart,
    PeriodEnd,
    Goal,
    Penalty,
    Card,
    Var,
    Substitution,
    Foul,
    Corner,
    Clock,
    MatchEnd,
    Point,
    GameEnd,
    SetEnd,
    Challenge,
    MedicalTimeout,
    Suspension,
    Retirement,
    Walkover,
)
TENNIS_TYPES: tuple[type[FeedEvent], ...] = FEED_TYPES[-8:]
FOOTBALL_TYPES: tuple[type[FeedEvent], ...] = (
    PeriodStart,
    PeriodEnd,
    Goal,
    Penalty,
    Card,
    Var,
    Substitution,
    Foul,
    Corner,
)
Event = (
    Fixture
    | PeriodStart
    | PeriodEnd
    | Goal
    | Penalty
    | Card
    | Var
    | Substitution
    | Foul
    | Corner
    | Clock
    | MatchEnd
    | Point
    | GameEnd
    | SetEnd
    | Challenge
    | MedicalTimeout
    | Suspension
    | Retirement
    | Walkover
    | Deposit
    | Bet
)
TYPE_NAMES: frozenset[str] = frozenset(
    [str(t.__struct_config__.tag) for t in FEED_TYPES] + ["deposit", "bet"]
)


def type_name(event: FeedEvent) -> str:
    """A feed event's `type`, as in its line."""
    return event.__struct_config__.tag  # type: ignore[return-value]
