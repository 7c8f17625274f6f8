"""Output records, one NamedTuple per table of `sinks/schema.sql` (same columns, same order).

The per-match logic emits these; sinks only batch them.
`tests/test_parse_validate.py::test_every_row_type_matches_its_table` keeps each row type
equal to its table.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

# A row from its fields in order, without NamedTuple's Python-level __new__ (rows are built
# on the per-line path). `new_row(MatchRow, (match_id, home, ...))`.
new_row = tuple.__new__


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


class TennisScoreRow(NamedTuple):
    """A tennis match's whole score after a change (a point, a retirement, the end)."""

    match_id: str
    version: int  # rises with every change of the match's score
    best_of: int
    final_set_tiebreak: bool
    server: str  # home or away: who serves the next point
    home_sets: int
    away_sets: int
    home_games: int  # in the set in play
    away_games: int
    points: str  # in the game in play, home first: "15-30", "AD-40"; a tiebreak's "5-4"
    set_scores: str  # finished sets, home first: "6-4 3-6"
    points_played: int
    result: str  # "", home, away (the winner), retired:<side>, walkover:<side>
    ts: int


class MarketStatusRow(NamedTuple):
    """One status or price change of a market: a `market_history` row, the new `market_status`."""

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


class BetRow(NamedTuple):
    """A bet's latest state: version 1 when decided, 2 when settled."""

    bet_id: str
    user_id: str
    match_id: str
    market: str
    selection: str
    stake: Decimal
    price: Decimal
    status: str  # accepted, rejected, won, lost, void
    reason: str
    payout: Decimal
    ts: int
    version: int


class WalletRow(NamedTuple):
    user_id: str
    balance: Decimal
    version: int
    ts: int


class LedgerRow(NamedTuple):
    """One movement of a wallet: deposit, stake, payout (every balance it ever had)."""

    user_id: str
    version: int
    ts: int
    kind: str
    amount: Decimal
    balance: Decimal
    ref: str


class LatencyRow(NamedTuple):
    """One worker's lines of one wall-clock minute in a live flow, and their latency: from
    a line's arrival (the live source took it from the Kafka consumer) to the end of its
    processing by its match (its rows handed on to the sinks). `operators/latency.py`."""

    minute: int  # epoch ms of the minute's start (UTC) in which the lines were handed over
    worker: int
    lines: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


Row = (
    FeedEventRow
    | Reject
    | FeedGapRow
    | MatchRow
    | TennisScoreRow
    | MarketStatusRow
    | PriceRow
    | BetRow
    | WalletRow
    | LedgerRow
    | LatencyRow
)

TABLE_OF: dict[type, str] = {
    FeedEventRow: "feed_events",
    Reject: "rejects",
    FeedGapRow: "feed_gaps",
    MatchRow: "matches",
    TennisScoreRow: "tennis_scores",
    MarketStatusRow: "market_status",
    PriceRow: "prices",
    BetRow: "bets",
    WalletRow: "wallets",
    LedgerRow: "wallet_ledger",
    LatencyRow: "latency",
}
