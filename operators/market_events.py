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

_STATUS: dict[type, str] = {
    MarketSuspended: "SUSPENDED",
    MarketReopened: "OPEN",
    MarketRepriced: "OPEN",
    MarketClosed: "CLOSED",
    MarketSettled: "SETTLED",
}


class EventSink(Protocol):
    """Where the markets put their events (a list that may hold other items too)."""

    def append(self, item: MarketEvent, /) -> None: ...


def market_rows(event: MarketEvent, out: list[Any]) -> None:
    """Append the rows of one event: its `market_status` row, then one `prices` row per
    selection when it carries prices."""
    match_id, market, version, reason, ts = event[:5]
    winner = event.winner if isinstance(event, MarketSettled) else None
    status_row = (match_id, market, _STATUS[type(event)], version, reason, ts, winner)
    out.append(new_row(MarketStatusRow, status_row))
    if isinstance(event, PRICED):
        for selection, (probability, price) in event.prices.items():
            row = (match_id, market, version, selection, probability, price, ts)
            out.append(new_row(PriceRow, row))


def project(items: Iterable[Any], out: list[Any]) -> list[Any]:
    """`items` appended to `out` in order, each market event replaced by its rows."""
    events = _STATUS
    for item in items:
        if type(item) in events:
            market_rows(item, out)
        else:
            out.append(item)
    return out
