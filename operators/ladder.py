"""The Betfair price ladder: the 350 decimal prices from 1.01 to 1000 a price may take.

Prices are `Decimal`s with two places ("2.50", "1000.00"), so they print and compare exactly.
Lookups bisect a parallel tuple of floats, which is what the pricer hands in.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from decimal import Decimal

# (up to, increment): prices run from the previous bound in steps of `increment`.
_BANDS: tuple[tuple[str, str], ...] = (
    ("2", "0.01"),
    ("3", "0.02"),
    ("4", "0.05"),
    ("6", "0.1"),
    ("10", "0.2"),
    ("20", "0.5"),
    ("30", "1"),
    ("50", "2"),
    ("100", "5"),
    ("1000", "10"),
)
_CENT = Decimal("0.01")


def _build() -> tuple[Decimal, ...]:
    prices = [Decimal("1.01")]
    for bound, step in _BANDS:
        top, inc = Decimal(bound), Decimal(step)
        while prices[-1] < top:
            prices.append((prices[-1] + inc).quantize(_CENT))
    return tuple(prices)


LADDER: tuple[Decimal, ...] = _build()
MIN_PRICE: Decimal = LADDER[0]
MAX_PRICE: Decimal = LADDER[-1]

_FLOATS: tuple[float, ...] = tuple(float(p) for p in LADDER)
_MEMBERS: frozenset[Decimal] = frozenset(LADDER)
# A float price within this relative distance below a ladder price counts as that price:
# 1 / (1 / 2.5) is 2.4999999999999996, which should offer 2.50, not 2.48.
_FLOAT_SLACK = 1e-9
_SLACK = 1.0 + _FLOAT_SLACK
_TOP = float(MAX_PRICE)
# _FLOORS[bisect_right(_FLOATS, x)] is the ladder price at or below x, 1.01 below the ladder.
_FLOORS: tuple[Decimal, ...] = (MIN_PRICE, *LADDER)


def ladder_floor(price: float | Decimal) -> Decimal:
    """The largest ladder price <= `price`, clamped to [1.01, 1000].

    Rounding down is the bookmaker's side: a lower price never offers more than the model
    asked for. `inf` gives 1000; NaN raises ValueError.
    """
    if type(price) is float:  # the pricer's case, first
        if price != price:
            raise ValueError("price is NaN")
        index = bisect_right(_FLOATS, price * _SLACK)
    elif isinstance(price, Decimal):
        if price.is_nan():
            raise ValueError("price is NaN")
        index = bisect_right(LADDER, price)
    else:
        if math.isnan(price):
            raise ValueError("price is NaN")
        index = bisect_right(_FLOATS, price * _SLACK)
    return LADDER[index - 1] if index > 0 else MIN_PRICE


def offered_prices(implied: Sequence[float]) -> list[Decimal]:
    """The price offered for each implied probability q: `ladder_floor(1 / q)`, and 1000 when
    1 / q is beyond the ladder (q <= 1/1000, q = 0 included). NaN raises ValueError.

    The pricer's whole book in one pass, without a function call per price.
    """
    return [
        _FLOORS[bisect_right(_FLOATS, 1.0 / q * _SLACK)] if q * _TOP > 1.0 else _beyond(q)
        for q in implied
    ]


def _beyond(implied: float) -> Decimal:
    """The price for an implied probability too small for the ladder (or NaN)."""
    if implied != implied:
        raise ValueError("implied probability is NaN")
    return MAX_PRICE


def on_ladder(price: Decimal) -> bool:
    """Whether `price` is exactly one of the ladder prices (2.5 and 2.50 both are)."""
    return price.is_finite() and price in _MEMBERS


def next_tick(price: Decimal) -> Decimal | None:
    """The ladder price one tick above `price` (a ladder price), None at 1000."""
    index = bisect_right(LADDER, price)
    return LADDER[index] if index < len(LADDER) else None
