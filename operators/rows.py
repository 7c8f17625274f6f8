"""Output records, one NamedTuple per table of `sinks/schema.sql` (same columns, same order).

The per-match logic emits these; sinks only batch them. `tests/test_schema.py` checks that
every row type matches its table.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple


class FeedEventRow(NamedTuple):
    provider: str
    match_id: str
    seq: int
    ts: int
    type: str
    payload: str
    source: str


class Reject(NamedTuple):
    source: str
    reason: str
    detail: str
    raw: str
    ts: int | None
    provider: str | None
    match_id: str | None


class FeedGapRow(NamedTuple):
    provider: str
    match_id: str
    from_seq: int
    to_seq: int
    ts: int


class MatchRow(NamedTuple):
    match_id: str
    home: str
    away: str
    kickoff: int
    period: int
    minute: int
    home_score: int
    away_score: int
    home_red: int
    away_red: int
    status: str
    ts: int


class MarketStatusRow(NamedTuple):
    """One status or price change of a market: a `market_history` row and the new `market_status`."""

    match_id: str
    market: str
    status: str
    version: int
    reason: str
    ts: int
    winner: str | None


class PriceRow(NamedTuple):
    match_id: str
    market: str
    version: int
    selection: str
    probability: float
    price: Decimal
    ts: int


Row = FeedEventRow | Reject | FeedGapRow | MatchRow | MarketStatusRow | PriceRow

TABLE_OF: dict[type, str] = {
    FeedEventRow: "feed_events",
    Reject: "rejects",
    FeedGapRow: "feed_gaps",
    MatchRow: "matches",
    MarketStatusRow: "market_status",
    PriceRow: "prices",
}
