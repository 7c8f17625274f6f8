"""Kafka messages <-> oddsflow values: output rows -> `(topic, key, json)`, input message
-> `RawLine` and its place in arrival order.

The topics, keys and message shapes: docs/topics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from connectors.kafka.settings import (
    BETS,
    MARKETS,
    MATCHES,
    POSITION_HEADER,
    PRICES,
    REJECTS,
    WALLETS,
)
from operators.ordering import line_ts
from operators.parse import RawLine
from operators.rows import BetRow, MarketStatusRow, MatchRow, PriceRow, Reject, WalletRow
from operators.signing import MessageHeaders, header_signature, header_value

SinkItem = tuple[str, str, bytes]
"""`(topic_suffix, key, value)`: topic without the prefix, message key, message value."""

_encode = msgspec.json.Encoder(decimal_format="string").encode


def _by_match(row: Any) -> str:
    return str(row.match_id)


def _by_user(row: Any) -> str:
    return str(row.user_id)


def _reject_key(row: Any) -> str:
    return row.match_id or ""


# Row type -> (topic, key of the row, extra fields for rows without a version of their own).
_ROUTES: dict[type, tuple[str, Callable[[Any], str], Callable[[Any], dict[str, Any]]]] = {
    MarketStatusRow: (MARKETS, _by_match, lambda row: {}),
    PriceRow: (PRICES, _by_match, lambda row: {}),
    MatchRow: (MATCHES, _by_match, lambda row: {"version": row.ts}),
    BetRow: (BETS, _by_user, lambda row: {}),
    WalletRow: (WALLETS, _by_user, lambda row: {}),
    Reject: (REJECTS, _reject_key, lambda row: {"version": 1}),
}


def to_messages(item: tuple[str, Sequence[object]]) -> list[SinkItem]:
    """`(key, [row or wallet message, ...])` from `market_sync` -> `(topic, key, json)`s.

    Rows without a topic (feed events, gaps, ledger, latency) and wallet messages are
    skipped.
    """
    out: list[SinkItem] = []
    for row in item[1]:
        route = _ROUTES.get(type(row))
        if route is None:
            continue
        topic, key_of, extra = route
        key = key_of(row)
        value: dict[str, Any] = row._asdict()  # type: ignore[attr-defined]
        value.update(extra(row))
        value["key"] = key
        out.append((topic, key, _encode(value)))
    return out


Order = tuple[int, int, int]  # Kafka timestamp (ms), oddsflow-pos header, event time


def to_raw_line(msg: Message, where: str, arrived: float) -> tuple[Order, RawLine]:
    """An input message (read from `where`, "topic/partition") -> its line, named
    "topic/partition/offset", and its place in arrival order: the message's Kafka
    timestamp, then its position in the file `oddsflow publish` sent, then the line's
    event time."""
    data = msg.value() or b""
    headers = msg.headers()
    kind, created = msg.timestamp()
    order = (
        created if kind != TIMESTAMP_NOT_AVAILABLE else 0,
        header_position(headers),
        line_ts(data) or 0,
    )
    source = f"{where}/{msg.offset() or 0}"
    return order, RawLine(source, data, signature=header_signature(headers), arrived=arrived)


def header_position(headers: MessageHeaders) -> int:
    """The `oddsflow-pos` header of an input message; 0 when it has none."""
    try:
        return int(header_value(headers, POSITION_HEADER) or 0)
    except ValueError:
        return 0
