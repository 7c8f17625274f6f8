"""Market events: what a match's markets tell the rest of the domain, one record per change.

`Market.move` emits them; the bets read them (`operators.bets`). Rows are a projection made
where per-match output leaves the domain (`project`, applied by `operators.engine`): an
event becomes its `market_status` row and, when it carries prices, its `prices` rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from operators.rows import MarketStatusRow, PriceRow, new_row

Prices = dict[str, tuple[float, Decimal]]  # selection -> (fair probability, offered price)


class MarketEvent(msgspec.Struct, frozen=True, gc=False):
    """One change of one market: its new `version`, why, and when (event time). Built by
    position, `MarketSuspended(match_id, market, version, reason, ts)`; `gc=False`: an
    event holds no reference back, so it can be in no cycle."""

    match_id: str
    market: str
    version: int
    reason: str
    ts: int


class MarketSuspended(MarketEvent, frozen=True, gc=False):
    pass


class MarketReopened(MarketEvent, frozen=True, gc=False):
    """OPEN from SUSPENDED (a market's first opening among them), with its prices."""

    prices: Prices


class MarketRepriced(MarketEvent, frozen=True, gc=False):
    """Still OPEN, new prices."""

    prices: Prices


class MarketClosed(MarketEvent, frozen=True, gc=False):
    pass


class MarketSettled(MarketEvent, frozen=True, gc=False):
    winner: str


PRICED = (MarketReopened, MarketRepriced)


class EventSink(Protocol):
    """Where the markets put their events (a list that may hold other items too)."""

    def append(self, item: MarketEvent, /) -> None: ...


def project(items: Iterable[Any], out: list[Any]) -> list[Any]:
    """`items` appended to `out` in order, each market event replaced by its rows: its
    `market_status` row, then, when it carries prices, one `prices` row per selection."""
    status_of, append = _STATUS, out.append
    for item in items:
        status = status_of.get(type(item))
        if status is None:
            append(item)
            continue
        match_id, market, version, ts = item.match_id, item.market, item.version, item.ts
        winner = item.winner if status == "SETTLED" else None
        row = (match_id, market, status, version, item.reason, ts, winner)
        append(new_row(MarketStatusRow, row))
        if status == "OPEN":
            for selection, (probability, price) in item.prices.items():
                row = (match_id, market, version, selection, probability, price, ts)
                append(new_row(PriceRow, row))
    return out


# The status of each event's row (a lookup: the projection runs for every market change).
_STATUS: dict[type, str] = {
    MarketSuspended: "SUSPENDED",
    MarketReopened: "OPEN",
    MarketRepriced: "OPEN",
    MarketClosed: "CLOSED",
    MarketSettled: "SETTLED",
}
