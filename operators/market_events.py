"""Market events: what a match's markets tell the rest of the domain, one record per change.

`Market.move` emits them; the bets read them (`operators.bets`). Rows are a projection made
where per-match output leaves the domain (`project`, applied by `operators.engine`): an
event becomes its `market_status` row and, when it carries prices, its `prices` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def market_rows(event: MarketEvent, out: list[Any]) -> None:
    """Append the rows of one event: its `market_status` row, then, when it carries prices,
    one `prices` row per selection."""
    _ROWS[type(event)](event, out)


def project(items: Iterable[Any], out: list[Any]) -> list[Any]:
    """`items` appended to `out` in order, each market event replaced by its rows."""
    rows_of, append = _ROWS, out.append
    for item in items:
        to_rows = rows_of.get(type(item))
        if to_rows is None:
            append(item)
        else:
            to_rows(item, out)
    return out


# One function per event type: the projection runs for every market change.


def _status_row(event: MarketEvent, status: str, winner: str | None) -> MarketStatusRow:
    match_id, market, version, reason, ts = event[:5]
    return new_row(MarketStatusRow, (match_id, market, status, version, reason, ts, winner))


def _suspended(event: MarketSuspended, out: list[Any]) -> None:
    out.append(_status_row(event, "SUSPENDED", None))


def _opened(event: MarketReopened | MarketRepriced, out: list[Any]) -> None:
    match_id, market, version, reason, ts, prices = event
    out.append(new_row(MarketStatusRow, (match_id, market, "OPEN", version, reason, ts, None)))
    for selection, (probability, price) in prices.items():
        row = (match_id, market, version, selection, probability, price, ts)
        out.append(new_row(PriceRow, row))


def _closed(event: MarketClosed, out: list[Any]) -> None:
    out.append(_status_row(event, "CLOSED", None))


def _settled(event: MarketSettled, out: list[Any]) -> None:
    out.append(_status_row(event, "SETTLED", event.winner))


_ROWS: dict[type, Callable[[Any, list[Any]], None]] = {
    MarketSuspended: _suspended,
    MarketReopened: _opened,
    MarketRepriced: _opened,
    MarketClosed: _closed,
    MarketSettled: _settled,
}
