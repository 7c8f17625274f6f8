"""Bytewax wiring of the per-match and per-wallet logic: the shared core of both flows.

Thin on purpose: the logic is `MatchProcessor` (per match) and `WalletShard` (per shard of
users); this module only keys lines, calls them, and carries verdicts from matches to
wallets (no cycle: wallets never answer matches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic

from flows.bytewax_compat import Snapshot, Snapshots, resume_state
from operators.bets import BetDecision, SettlementNotice, WalletMessage, wallet_shard_of
from operators.engine import MatchProcessor, Output
from operators.latency import LatencyProbe
from operators.ordering import Ordered, PartitionMark
from operators.parse import RawLine, is_wallet_key
from operators.providers import Processor, new_processor
from operators.rows import Row
from operators.settings import DEFAULT_RULES, Rules
from operators.wallets import WalletShard

Clock = Callable[[], datetime]


class _MatchLogic(StatefulBatchLogic[list[RawLine], list[Output], Snapshot]):
    """One key's processor. Bytewax calls `on_batch` with the line groups that reached this
    key since its last call, `snapshot` at each epoch end (see `Snapshot`), and, in a live
    flow only (`clock` given), `notify_at`/`on_notify` so that provider silence and due
    reopenings fire on time without waiting for the next line: event time is estimated as
    the last line's `ts` plus the wall time since it came. Replays pass no clock and stay
    deterministic. `latency`: live flows only, told when each batch's rows go to the sinks
    (and `on_eof`)."""

    def __init__(
        self,
        rules: Rules,
        clock: Clock | None,
        resume: Snapshot | bytes | None,
        latency: LatencyProbe | None = None,
    ) -> None:
        self.rules = rules
        self.clock = clock
        self.latency = latency
        self.proc = cast(Processor | None, resume_state(resume))
        self.seen_at: datetime | None = None  # wall time of the last line
        self.snapshots = Snapshots()

    def on_batch(self, values: list[list[RawLine]]) -> tuple[list[list[Output]], bool]:
        self.snapshots.changing()
        out: list[Output] = []
        for group in values:
            if self.proc is None:
                self.proc = new_processor(group[0], self.rules)
            out.extend(self.proc.process_lines(group))
        if self.clock is not None:
            self.seen_at = self.clock()
        if self.latency is not None:
            out.extend(self.latency.handed_over(raw.arrived for group in values for raw in group))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def on_item(self, raw: RawLine) -> tuple[list[list[Output]], bool]:
        """One line (tests call it directly)."""
        return self.on_batch([[raw]])

    def notify_at(self) -> datetime | None:
        due = self._due_in_ms()
        if due is None or self.seen_at is None:
            return None
        return self.seen_at + timedelta(milliseconds=due)

    def on_eof(self) -> tuple[list[list[Output]], bool]:
        rows: list[Output] = [*self.latency.end()] if self.latency is not None else []
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Output]], bool]:
        proc = self.proc
        if not isinstance(proc, MatchProcessor) or self.seen_at is None or self.clock is None:
            return [], StatefulBatchLogic.RETAIN
        waited = (self.clock() - self.seen_at) / timedelta(milliseconds=1)
        self.snapshots.changing()
        out = proc.idle(proc.last_ts + int(waited))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Snapshot:
        return self.snapshots.take(self.proc)

    def _due_in_ms(self) -> int | None:
        if self.clock is None or not isinstance(self.proc, MatchProcessor):
            return None
        due = self.proc.next_due()
        return None if due is None else max(0, due - self.proc.last_ts)


_MESSAGES = (BetDecision, SettlementNotice)


def _for_wallets(
    batch: list[tuple[str, list[Output]]],
) -> list[tuple[str, list[WalletMessage]]]:
    """The wallet messages among a batch of match outputs, grouped by shard, in order."""
    groups: dict[str, list[WalletMessage]] = {}
    for _, outs in batch:
        for out in outs:
            if isinstance(out, _MESSAGES):
                groups.setdefault(wallet_shard_of(out), []).append(out)
    return list(groups.items())


WalletInput = Ordered | PartitionMark | WalletMessage


class _WalletLogic(StatefulBatchLogic[list[WalletInput], list[Row], Snapshot]):
    """Bytewax calls `on_batch` with the groups of lines and messages that reached this
    shard, `on_eof` at the end of the input, `snapshot` at each epoch for recovery.

    `finite`: the end of the input is the end of the feed, so bets still waiting for their
    verdict are rejected then. A live flow's input ends only when the flow is stopped: a
    restart goes on with them (from the snapshot, or from the lines read again)."""

    def __init__(self, finite: bool, resume: Snapshot | bytes | WalletShard | None) -> None:
        self.finite = finite
        self.shard = cast(WalletShard | None, resume_state(resume)) or WalletShard()
        self.snapshots = Snapshots()

    def on_batch(self, values: list[list[WalletInput]]) -> tuple[list[list[Row]], bool]:
        self.snapshots.changing()
        shard = self.shard
        rows: list[Row] = []
        for group in values:
            for value in group:
                if isinstance(value, Ordered):
                    rows.extend(shard.ordered(value))
                elif isinstance(value, PartitionMark):
                    rows.extend(shard.mark(value))
                else:
                    rows.extend(shard.message(value))
        return ([rows] if rows else [], StatefulBatchLogic.RETAIN)

    def on_eof(self) -> tuple[list[list[Row]], bool]:
        if not self.finite:
            return [], StatefulBatchLogic.RETAIN
        self.snapshots.changing()
        rows = self.shard.finish()
        return ([rows] if rows else [], StatefulBatchLogic.RETAIN)

    def snapshot(self) -> Snapshot:
        return self.snapshots.take(self.shard)


@operator
def market_sync(
    step_id: str,
    keyed: KeyedStream[list],
    rules: Rules = DEFAULT_RULES,
    clock: Clock | None = None,
    finite: bool = True,
    latency: LatencyProbe | None = None,
) -> Stream[tuple[str, Sequence[object]]]:
    """Routed lines in; per line, the rows it causes, keyed.

    In: `(key, [item, ...])` from a `Router`: raw lines for each match, ordered lines and
    partition marks for each wallet shard. Out: `(key, [row, ...])`, one item per key and
    batch of lines (the rows of several lines, in order); match lists also carry the wallet
    messages, which sinks skip. `clock`, `latency`: live flows only (see `_MatchLogic`);
    `latency` adds `LatencyRow`s to the match lists. `finite`: whether the input's end is
    the feed's (see `_WalletLogic`).
    """
    split = op.branch("split", keyed, lambda kv: not is_wallet_key(kv[0]))
    matched = op.stateful_batch(
        "match", split.trues, partial(_MatchLogic, rules, clock, latency=latency)
    )
    # shape: (match key, [Row | WalletMessage])
    messages = op.flat_map_batch("verdicts", matched, _for_wallets)
    # shape: (shard, [WalletMessage])
    to_wallets = cast(
        KeyedStream[list[WalletInput]],
        op.merge("to_wallets", split.falses, messages),
    )
    # shape: (shard, [Row])
    wallets = op.stateful_batch("wallet", to_wallets, partial(_WalletLogic, finite))
    rows = op.merge("rows", matched, wallets)
    return cast(Stream[tuple[str, Sequence[object]]], rows)  # lists of rows (and messages)
