"""Market events: what a match's markets tell the rest of the domain, one record per change.

`Market.move` emits them; the bets read them (`operators.bets`). Rows are a projection made
where per-match output leaves the domain (`project`, applied by `operators.engine`): an
event becomes its `market_status` row and, when it carries prices, its `prices` rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from operators.rows import MarketStatusRow, PriceRow, new_row

Prices = dict[str, tuple[float, Decimal]]  # selection -> (fair probability, offered price)


class MarketSuspended(NamedTuple):
    match_id: str
    market: str
    version: int
    reason: str
    ts: int


class MarketReopened(NamedTuple):
    """OPEN from SUSPENDED (a market's first opening among them), with its prices."""

    match_id: str
    market: str
    version: int
    reason: str
    ts: int
    prices: Prices


class MarketRepriced(NamedTuple):
    """Still OPEN, new prices."""

    match_id: str
    market: str
    version: int
    reason: str
    ts: int
    prices: Prices


class MarketClosed(NamedTuple):
    match_id: str
    market: str
    version: int
    reason: str
    ts: int


class MarketSettled(NamedTuple):
    match_id: str
    market: str
    version: int
    reason: str
    ts: int
    winner: str


MarketEvent = MarketSuspended | MarketReopened | MarketRepriced | MarketClosed | MarketSettled
MARKET_EVENTS = (MarketSuspended, MarketReopened, MarketRepriced, MarketClosed, MarketSettled)
PRICED = (MarketReopened, MarketRepriced)

# An event from its fields in order, without NamedTuple's Python-level __new__ (one per
# market change, on the per-line path): `new_event(MarketSuspended, (match_id, ...))`.
new_event = tuple.__new__


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
        elif status == "OPEN":
            match_id, market, version, reason, ts, prices = item
            append(new_row(MarketStatusRow, (match_id, market, status, version, reason, ts, None)))
            for selection, (probability, price) in prices.items():
                row = (match_id, market, version, selection, probability, price, ts)
                append(new_row(PriceRow, row))
        else:
            winner = item[5] if status == "SETTLED" else None
            row = (item[0], item[1], status, item[2], item[3], item[4], winner)
            append(new_row(MarketStatusRow, row))
    return out


# The status of each event's row (a lookup: the projection runs for every market change).
_STATUS: dict[type, str] = {
    MarketSuspended: "SUSPENDED",
    MarketReopened: "OPEN",
    MarketRepriced: "OPEN",
    MarketClosed: "CLOSED",
    MarketSettled: "SETTLED",
}
