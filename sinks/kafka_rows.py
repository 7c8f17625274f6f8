"""Output rows -> Kafka messages (CONTRACT section 3), and the Kafka output step of a flow.

One topic per kind of row; the value is JSON with every field of the row plus `key`
(decimals as strings, so balances stay exact). Every message carries its key, a
`version` and the event `ts`, so a consumer can drop duplicates (a restarted flow or a
second replay of the same file sends the same messages again, byte for byte):

| topic | key | one message per | duplicate when the same |
| --- | --- | --- | --- |
| `markets` | match_id | status or price change | (match_id, market, version) |
| `prices` | match_id | selection of a market version | (match_id, market, version, selection) |
| `matches` | match_id | change of the match state | (match_id, version) and value |
| `bets` | user_id | bet decided (version 1) or settled (2) | (bet_id, version) |
| `wallets` | user_id | balance change | (user_id, version) |
| `rejects` | match_id or "" | rejected line | (source, reason) |

`matches`: a match row has no version of its own; `version` is its event `ts`. The engine
emits at most one match row per feed line, so two rows share a version only when two lines
of one match carry the same millisecond; each message is the match's whole state, so a
consumer keeps the last one per key in partition order, and deduplicates on the version
and the value. `rejects` are facts, never updated: `version` is always 1 and the id is
(`source`, `reason`), the key of the `rejects` table; `ts` is null when the line had none.

A tennis match's `matches` messages count sets in `home_score` / `away_score` and carry the
set in play as `period`; its whole score (games, points, server: `tennis_scores`) stays in
DuckDB, for the dashboard, as do feed events, feed gaps and the wallet ledger. Wallet
messages (the verdicts matches send to wallets) are internal and never leave the flow.
So do the live flow's `latency` rows: they describe the flow, not the markets, and
consumers of these topics follow markets and bets (the dashboard reads them from DuckDB).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.outputs import StatefulSinkPartition

from operators.rows import BetRow, MarketStatusRow, MatchRow, PriceRow, Reject, WalletRow
from sinks.kafka_config import BETS, MARKETS, MATCHES, PRICES, REJECTS, WALLETS, KafkaSettings
from sinks.kafka_sink import KafkaSink, KafkaSinkPartition, SinkItem
from sinks.workers import PerWorkerSink, this_worker

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

    Rows without a topic (feed events, gaps, ledger) and wallet messages are skipped.
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


@operator
def kafka_output(
    step_id: str,
    rows: Stream[tuple[str, Sequence[object]]],
    settings: KafkaSettings,
    recoverable: bool = True,
) -> None:
    """The Kafka sink of a flow. In: `(key, [row, ...])` from `market_sync`; writes each
    row with a topic to its prefixed topic (the topics must exist: `ensure_topics`).

    `recoverable`: wait for every delivery at each snapshot (see `_Partition`); a flow run
    without a recovery store may pass False and never wait there.
    """
    messages = op.map("to_messages", rows, _messages)  # shape: ("kafka", [(topic, key, json)])
    op.output("send", messages, _SnapshotFlushedSink(settings, recoverable))


def _messages(item: tuple[str, Sequence[object]]) -> tuple[str, list[SinkItem]]:
    return _PART, to_messages(item)


_PART = "kafka"

# Set by a step of this process that raises (this sink, the live source): Bytewax then
# unwinds and calls every partition's `close`, where a second exception aborts the process
# ("thread caused non-unwinding panic") before the first one is printed.
FLOW_FAILED = threading.Event()


class _Partition(StatefulSinkPartition[list[SinkItem], None]):
    """A `KafkaSinkPartition` that waits for its deliveries at every snapshot, and whose
    `close` does nothing once the flow failed.

    Bytewax snapshots the flow at the end of each epoch; a resumed run emits again only
    what came after. Waiting there for every message of the epoch to be acknowledged is
    what makes a restart lose nothing (a kill -9 drops librdkafka's queue): the wait is
    the few milliseconds of linger and acks of the last messages. On a normal end `close`
    waits for every delivery and raises `KafkaDeliveryError` if one failed; once a step
    failed, the messages still queued are left undelivered (a restart sends them again)
    rather than waited for and raised.
    """

    def __init__(self, inner: KafkaSinkPartition, recoverable: bool) -> None:
        self.inner = inner
        self.recoverable = recoverable

    def write_batch(self, values: list[list[SinkItem]]) -> None:
        try:
            for items in values:
                self.inner.write_batch(items)
        except BaseException:
            FLOW_FAILED.set()
            raise

    def snapshot(self) -> None:
        if not self.recoverable:
            return  # nothing resumes from this snapshot: no reason to wait
        try:
            self.inner.flush()
        except BaseException:
            FLOW_FAILED.set()
            raise

    def close(self) -> None:
        if not FLOW_FAILED.is_set():
            self.inner.close()


class _Idle(StatefulSinkPartition[list[SinkItem], None]):
    """The partition of a worker a resumed run lost: it held no state, and gets no items."""

    def write_batch(self, values: list[list[SinkItem]]) -> None:
        raise AssertionError("items go to each worker's own partition")

    def snapshot(self) -> None:
        return None


class _SnapshotFlushedSink(PerWorkerSink[list[SinkItem], None]):
    """One partition per worker, each with its own producer: messages never change worker
    to be sent (`sinks/workers.py`)."""

    def __init__(self, settings: KafkaSettings, recoverable: bool) -> None:
        self.sink = KafkaSink(settings)
        self.recoverable = recoverable

    def build_worker_part(
        self, index: int, resume_state: None
    ) -> StatefulSinkPartition[list[SinkItem], None]:
        worker, count = this_worker()
        if index != worker:
            return _Idle()
        return _Partition(self.sink.build("send", worker, count), self.recoverable)
