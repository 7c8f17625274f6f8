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
from typing import Literal

from operators.ladder import MAX_PRICE, ladder_floor

MarginMethod = Literal["proportional", "shin"]

MARKETS_OU = ("ou_0.5", "ou_1.5", "ou_2.5", "ou_3.5", "ou_4.5")
_OU_LINES = tuple(enumerate(MARKETS_OU))  # (goals the under allows, market)

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
_TOP = float(MAX_PRICE)


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


def fair_probabilities(s: PricingState) -> dict[str, dict[str, float]]:
    """market -> selection -> fair probability, for `1x2` (home, draw, away), every `ou_X.5`
    (over, under) and `goal_N` where N = home_score + away_score + 1 (home, none, away: who
    scores the next goal). Decided markets keep their certain outcome (ou_0.5 over = 1.0 after
    a goal); closing them is the market state machine's job."""
    home_rate, away_rate = remaining_rates(s)
    goals = s.home_score + s.away_score
    home, draw, away = _match_odds(
        _poisson(home_rate), _poisson(away_rate), s.home_score - s.away_score
    )
    book: dict[str, dict[str, float]] = {"1x2": {"home": home, "draw": draw, "away": away}}
    book.update(_over_under(home_rate + away_rate, goals))
    book[f"goal_{goals + 1}"] = _next_goal(home_rate, away_rate)
    return book


def quote(
    s: PricingState, margin: float = 0.05, method: MarginMethod = "proportional"
) -> dict[str, dict[str, tuple[float, Decimal]]]:
    """market -> selection -> (fair probability, offered decimal price on the Betfair ladder,
    >= 1.01). `margin` is the overround before ladder rounding (0.05: implied probabilities
    sum to 1.05); `method` says how it is spread over the selections."""
    if method == "proportional":  # the usual case, inlined: p x (1 + margin) per selection
        if not 0.0 <= margin < math.inf:
            raise ValueError(f"`margin` must be finite and >= 0, got {margin}")
        scale = 1.0 + margin
        return {
            market: {name: (p, _offer(p * scale)) for name, p in selections.items()}
            for market, selections in fair_probabilities(s).items()
        }
    quotes: dict[str, dict[str, tuple[float, Decimal]]] = {}
    for market, selections in fair_probabilities(s).items():
        fair = tuple(selections.values())
        implied = implied_probabilities(fair, margin, method)
        quotes[market] = {
            name: (p, _offer(q)) for name, p, q in zip(selections, fair, implied, strict=True)
        }
    return quotes


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


def _poisson(rate: float) -> list[float]:
    """Poisson(rate) pmf from 0 goals until past the mode and negligible; sums to 1 - ~1e-17."""
    term = math.exp(-rate)
    pmf = [term]
    k = 0
    while k < rate or term > _PMF_CUTOFF:
        k += 1
        term *= rate / k
        pmf.append(term)
    return pmf


def _tail_sums(pmf: list[float]) -> list[float]:
    """[P(X >= 0), P(X >= 1), ..., P(X >= n) = 0], summed from the tail so tiny tails stay
    exact."""
    sums = list(accumulate(reversed(pmf), initial=0.0))
    sums.reverse()
    return sums


def _match_odds(home: list[float], away: list[float], lead: int) -> tuple[float, float, float]:
    """P(home win, draw, away win) when home leads by `lead` (may be negative) and scores
    `home` more goals, away `away` more (pmfs). Home wins iff X > Y - lead."""
    n = len(home)
    below = list(accumulate(home, initial=0.0))  # below[j] = P(X < j)
    above = _tail_sums(home)  # above[j] = P(X >= j)
    win = draw = lose = 0.0
    for y, q in enumerate(away):
        level = y - lead  # home needs exactly this many more goals to draw
        if level < 0:
            win += q * above[0]
        elif level >= n:
            lose += q * below[n]
        else:
            win += q * above[level + 1]
            draw += q * home[level]
            lose += q * below[level]
    total = win + draw + lose  # the pmfs' truncated mass, ~1 - 1e-16
    return win / total, draw / total, lose / total


def _over_under(rate: float, goals: int) -> dict[str, dict[str, float]]:
    """Every `ou_X.5` market when `goals` are in and Poisson(rate) more are to come."""
    pmf = _poisson(rate)
    tail = _tail_sums(pmf)  # tail[k] = P(at least k more goals)
    total = tail[0]
    book: dict[str, dict[str, float]] = {}
    for line, market in _OU_LINES:
        needed = line + 1 - goals  # more goals the over still needs
        if needed <= 0:
            over = total
        elif needed < len(tail):
            over = tail[needed]
        else:
            over = 0.0
        book[market] = {"over": over / total, "under": (total - over) / total}
    return book


def _next_goal(home_rate: float, away_rate: float) -> dict[str, float]:
    """Who scores next: the first event of two independent Poisson processes, if any."""
    both = home_rate + away_rate
    if both == 0.0:
        return {"home": 0.0, "none": 1.0, "away": 0.0}
    scored = -math.expm1(-both)  # 1 - e^-both, exact for small rates
    return {
        "home": home_rate / both * scored,
        "none": math.exp(-both),
        "away": away_rate / both * scored,
    }


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


def _offer(implied: float) -> Decimal:
    """The ladder price for an implied probability: floor(1 / implied), within [1.01, 1000]."""
    if implied * _TOP <= 1.0:
        return MAX_PRICE
    return ladder_floor(1.0 / implied)
