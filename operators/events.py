"""The native feed model, version 1 (CONTRACT section 1), as typed msgspec structs.

One struct per line type, tagged by the `type` field, so a single decoder turns a JSON line
into the right struct and names the field when a line is wrong. Unknown extra fields are
ignored (providers may add fields); missing or wrongly typed ones are errors.
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
Minute = Annotated[int, msgspec.Meta(ge=0, le=200)]
Second = Annotated[int, msgspec.Meta(ge=0, le=59)]
Goals = Annotated[int, msgspec.Meta(ge=0, le=99)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Team = Literal["home", "away"]


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
    home: Name
    away: Name
    kickoff: NonNegInt
    home_rate: Rate
    away_rate: Rate

    def __post_init__(self) -> None:
        if not (math.isfinite(self.home_rate) and math.isfinite(self.away_rate)):
            raise ValueError("`home_rate`/`away_rate` must be finite")


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
    home_score: Goals
    away_score: Goals


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
    | Deposit
    | Bet
)
TYPE_NAMES: frozenset[str] = frozenset(
    [str(t.__struct_config__.tag) for t in FEED_TYPES] + ["deposit", "bet"]
)


def type_name(event: FeedEvent) -> str:
    """A feed event's `type`, as in its line."""
    return event.__struct_config__.tag  # type: ignore[return-value]
