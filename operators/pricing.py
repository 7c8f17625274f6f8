"""The in-play pricer: fair probabilities and offered ladder prices for one match.

Plain functions of an immutable `PricingState`; no I/O, no clock, no Bytewax. The model and
why each constant has its value are in docs/pricing.md. In short: each side's goals for the
rest of the match are Poisson with mean = pre-match rate x remaining share of play x red-card
factors; the final score is the current score plus those goals.

Every market is computed from one-dimensional Poisson pmfs (O(goals) work, no score matrix):
`1x2` sums one side's pmf against the other's tail sums, over/under uses the total
(a sum of independent Poissons is Poisson with the summed mean), `goal_N` is closed form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Literal, NamedTuple

from operators.ladder import offered_prices

MarginMethod = Literal["proportional", "shin"]

MARKETS_OU = ("ou_0.5", "ou_1.5", "ou_2.5", "ou_3.5", "ou_4.5")
_NEXT_GOAL = ("home", "none", "away")
# (market, selections, start, stop) per market: where its selections sit in a `Book`'s lists.
Layout = tuple[tuple[str, tuple[str, ...], int, int], ...]
_FIXED_LAYOUT: Layout = (  # goal_N comes last, see `_layout`
    ("1x2", ("home", "draw", "away"), 0, 3),
    *((market, ("over", "under"), 3 + 2 * i, 5 + 2 * i) for i, market in enumerate(MARKETS_OU)),
)
_LAYOUTS: dict[int, Layout] = {}  # by goals so far
_new_state = object.__new__  # a PricingState without its __init__ ...
_set_field = object.__setattr__  # ... filled in the way a frozen dataclass sets its own fields
_new_book = tuple.__new__  # a Book from its fields, without NamedTuple's Python __new__

# Play time, minutes. The running clock reads 45 at half time, so first-half added time has
# no clock minutes of its own: it is spread over the first 45 (each clock minute stands for
# 47/45 of play). Second-half added time is played on the clock past 90 (90+1 = 91 ...).
HALF = 45.0
FIRST_HALF_PLAY = HALF + 2.0
SECOND_HALF_ADDED = 4.0
SECOND_HALF_PLAY = HALF + SECOND_HALF_ADDED
MATCH_PLAY = FIRST_HALF_PLAY + SECOND_HALF_PLAY  # 96
LATE_FLOOR = 0.5  # play assumed left once the clock passes 90 + added, so prices stay finite

# Multiplicative effect of one red card on the goal rates (see docs/pricing.md).
RED_OWN = 0.67  # the side a player short
RED_OPPONENT = 1.2  # the side facing it
MAX_REDS = 4  # Law 3: below seven players the match is abandoned, more reds change nothing

MAX_RATE = 100.0  # guards exp(-rate) from underflowing; real rates are < 5
_PMF_CUTOFF = 1e-17  # stop a pmf past its mode once terms are this small
_SHIN_TOLERANCE = 1e-13


@dataclass(frozen=True, slots=True)
class PricingState:
    """What the pricer needs to know about a match at one moment."""

    home_rate: float  # pre-match expected goals over 90 min (fixture home_rate)
    away_rate: float
    minute: float  # running clock: 0 before/at kickoff, 45 at half time, 90+ late
    home_score: int = 0
    away_score: int = 0
    home_red: int = 0
    away_red: int = 0

    def __post_init__(self) -> None:
        for name in ("home_rate", "away_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= MAX_RATE:  # also rejects NaN
                raise ValueError(f"`{name}` must be within [0, {MAX_RATE}], got {rate}")
        if not 0.0 <= self.minute < math.inf:
            raise ValueError(f"`minute` must be finite and >= 0, got {self.minute}")
        for name in ("home_score", "away_score", "home_red", "away_red"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")

    @classmethod
    def trusted(
        cls,
        home_rate: float,
        away_rate: float,
        minute: float,
        home_score: int,
        away_score: int,
        home_red: int,
        away_red: int,
    ) -> PricingState:
        """A state from values a validated source already bounds (the match state folded
        from parsed feed lines), without `__post_init__`'s checks, which repricing every
        match minute would otherwise pay each time."""
        state = _new_state(cls)
        _set_field(state, "home_rate", home_rate)
        _set_field(state, "away_rate", away_rate)
        _set_field(state, "minute", minute)
        _set_field(state, "home_score", home_score)
        _set_field(state, "away_score", away_score)
        _set_field(state, "home_red", home_red)
        _set_field(state, "away_red", away_red)
        return state


def remaining_play(minute: float) -> float:
    """Expected minutes of play still to come at clock `minute` (96 at kickoff, 49 at half time)."""
    if minute <= HALF:
        return SECOND_HALF_PLAY + FIRST_HALF_PLAY * (HALF - minute) / HALF
    return max(2 * HALF + SECOND_HALF_ADDED - minute, LATE_FLOOR)


def remaining_rates(s: PricingState) -> tuple[float, float]:
    """Expected goals still to come for home and away."""
    share = remaining_play(s.minute) / MATCH_PLAY
    home_red, away_red = min(s.home_red, MAX_REDS), min(s.away_red, MAX_REDS)
    home = s.home_rate * share * RED_OWN**home_red * RED_OPPONENT**away_red
    away = s.away_rate * share * RED_OWN**away_red * RED_OPPONENT**home_red
    return home, away


class Book(NamedTuple):
    """Every market's quote in two flat lists, read through `layout`: (market, selections,
    start, stop) says that market's selections sit at [start:stop]. Repricing reads this,
    and builds a market's dict only when it publishes new prices (most reprices leave some
    markets unchanged)."""

    layout: Layout
    probabilities: list[float]  # fair
    prices: list[Decimal]  # offered, on the ladder


def fair_probabilities(s: PricingState) -> dict[str, dict[str, float]]:
    """market -> selection -> fair probability, for `1x2` (home, draw, away), every `ou_X.5`
    (over, under) and `goal_N` where N = home_score + away_score + 1 (home, none, away: who
    scores the next goal). Decided markets keep their certain outcome (ou_0.5 over = 1.0 after
    a goal); closing them is the market state machine's job."""
    fair = _fair(s)
    return {
        market: {name: fair[i] for i, name in enumerate(names, start)}
        for market, names, start, _ in _layout(s.home_score + s.away_score)
    }


def quote(
    s: PricingState, margin: float = 0.05, method: MarginMethod = "proportional"
) -> dict[str, dict[str, tuple[float, Decimal]]]:
    """market -> selection -> (fair probability, offered decimal price on the Betfair ladder,
    >= 1.01). `margin` is the overround before ladder rounding (0.05: implied probabilities
    sum to 1.05); `method` says how it is spread over the selections."""
    layout, fair, prices = quote_book(s, margin, method)
    return {
        market: {name: (fair[i], prices[i]) for i, name in enumerate(names, start)}
        for market, names, start, _ in layout
    }


def quote_book(
    s: PricingState, margin: float = 0.05, method: MarginMethod = "proportional"
) -> Book:
    """`quote` as a `Book`: the same markets in the same order, without a dict per market."""
    if method == "proportional" and not 0.0 <= margin < math.inf:
        raise ValueError(f"`margin` must be finite and >= 0, got {margin}")
    fair = _fair(s)
    layout = _layout(s.home_score + s.away_score)
    if method == "proportional":  # the usual case, inlined: p x (1 + margin) per selection
        scale = 1.0 + margin
        implied = [p * scale for p in fair]
    else:
        implied = []
        for _, _, start, stop in layout:
            implied += implied_probabilities(fair[start:stop], margin, method)
    return _new_book(Book, (layout, fair, offered_prices(implied)))


def implied_probabilities(
    fair: Sequence[float], margin: float, method: MarginMethod = "proportional"
) -> tuple[float, ...]:
    """The book's implied probabilities (1 / price before ladder rounding) for one market's
    fair probabilities; they sum to 1 + margin."""
    if not 0.0 <= margin < math.inf:
        raise ValueError(f"`margin` must be finite and >= 0, got {margin}")
    if method == "proportional":
        return _proportional(fair, margin)
    if method == "shin":
        return _shin(fair, margin)
    raise ValueError(f"unknown margin method {method!r}")


def _layout(goals: int) -> Layout:
    """Where each market sits in `_fair`'s flat list (see `Book`), after `goals` goals."""
    layouts = _LAYOUTS.get(goals)
    if layouts is None:
        start = _FIXED_LAYOUT[-1][3]
        goal_n = (f"goal_{goals + 1}", _NEXT_GOAL, start, start + len(_NEXT_GOAL))
        layouts = _LAYOUTS[goals] = (*_FIXED_LAYOUT, goal_n)
    return layouts


def _fair(s: PricingState) -> list[float]:
    """Every market's fair probabilities in one flat list, laid out as `_layout` says: the
    pricer builds no dict, its callers build only the ones they publish."""
    home_rate, away_rate = remaining_rates(s)
    fair = _match_odds(_poisson(home_rate), _poisson(away_rate), s.home_score - s.away_score)
    fair += _over_under(home_rate + away_rate, s.home_score + s.away_score)
    fair += _next_goal(home_rate, away_rate)
    return fair


def _poisson(rate: float) -> list[float]:
    """Poisson(rate) pmf from 0 goals until past the mode and negligible; sums to 1 - ~1e-17.

    Two loops, so the longer one, past the mode, tests one condition a term. `k` counts in
    floats: `rate / k` gives the same quotient as with an int, and float steps run faster.
    """
    term = math.exp(-rate)
    pmf = [term]
    k = 0.0
    while k < rate:
        k += 1.0
        term *= rate / k
        pmf.append(term)
    while term > _PMF_CUTOFF:
        k += 1.0
        term *= rate / k
        pmf.append(term)
    return pmf


def _tail_sums(pmf: list[float]) -> list[float]:
    """[P(X >= 0), P(X >= 1), ..., P(X >= n) = 0], summed from the tail so tiny tails stay
    exact."""
    sums = list(accumulate(reversed(pmf), initial=0.0))
    sums.reverse()
    return sums


def _match_odds(home: list[float], away: list[float], lead: int) -> list[float]:
    """[P(home win), P(draw), P(away win)] when home leads by `lead` (may be negative) and
    scores `home` more goals, away `away` more (pmfs). Home wins iff X > Y - lead."""
    n = len(home)
    below = list(accumulate(home, initial=0.0))  # below[j] = P(X < j)
    above = _tail_sums(home)  # above[j] = P(X >= j)
    win = draw = lose = 0.0
    # level = y - lead: home needs exactly this many more goals to draw when away scores y
    for level, q in enumerate(away, -lead):
        if level < 0:
            win += q * above[0]
        elif level >= n:
            lose += q * below[n]
        else:
            win += q * above[level + 1]
            draw += q * home[level]
            lose += q * below[level]
    total = win + draw + lose  # the pmfs' truncated mass, ~1 - 1e-16
    return [win / total, draw / total, lose / total]


def _over_under(rate: float, goals: int) -> list[float]:
    """Over, under of every `ou_X.5` line in turn, when `goals` are in and Poisson(rate)
    more are to come."""
    tail = _tail_sums(_poisson(rate))  # tail[k] = P(at least k more goals)
    total, last = tail[0], len(tail) - 1
    book: list[float] = []
    for needed in range(1 - goals, len(MARKETS_OU) + 1 - goals):  # goals each over needs
        over = total if needed <= 0 else tail[needed] if needed <= last else 0.0
        book.append(over / total)
        book.append((total - over) / total)
    return book


def _next_goal(home_rate: float, away_rate: float) -> tuple[float, float, float]:
    """(home, none, away): who scores next, the first event of two independent Poisson
    processes, if any."""
    both = home_rate + away_rate
    if both == 0.0:
        return (0.0, 1.0, 0.0)
    scored = -math.expm1(-both)  # 1 - e^-both, exact for small rates
    return (home_rate / both * scored, math.exp(-both), away_rate / both * scored)


def _proportional(fair: Sequence[float], margin: float) -> tuple[float, ...]:
    scale = 1.0 + margin
    return tuple(p * scale for p in fair)


def _shin(fair: Sequence[float], margin: float) -> tuple[float, ...]:
    """Shin (1993) prices: pi_i = sqrt(1 + margin) * sqrt(z p_i + (1 - z) p_i^2), with the
    insider share z solved so the pi_i sum to 1 + margin. Falls back to proportional when no
    z in [0, 1) reaches the margin (nearly decided markets)."""
    target = math.sqrt(1.0 + margin)
    if margin == 0.0 or sum(math.sqrt(p) for p in fair) <= target:
        return _proportional(fair, margin)
    # f(z) = sum sqrt(z p + (1 - z) p^2) rises and is concave in z, f(0) = 1 < target:
    # Newton from z = 0 climbs to the root without overshooting.
    z = 0.0
    for _ in range(100):
        value = slope = 0.0
        for p in fair:
            root = math.sqrt(z * p + (1.0 - z) * p * p)
            value += root
            if root > 0.0:
                slope += (p - p * p) / (2.0 * root)
        if slope <= 0.0:
            break
        step = (target - value) / slope
        z = min(max(z + step, 0.0), 1.0)  # f(0) may pass a target of ~1 by rounding
        if step < _SHIN_TOLERANCE:
            break
    return tuple(target * math.sqrt(z * p + (1.0 - z) * p * p) for p in fair)
