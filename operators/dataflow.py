"""Bytewax wiring of the per-match and per-wallet logic: the shared core of every flow.

Thin on purpose: the logic is `MatchProcessor` (per match) and `WalletShard` (per shard of
users); this module only keys lines, calls them, and carries verdicts from matches to
wallets (no cycle: wallets never answer matches).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from operators.bets import BetDecision, SettlementNotice, WalletMessage, wallet_shard_of
from operators.engine import Output
from operators.parse import RawLine, is_wallet_key
from operators.providers import Processor, new_processor, route_line
from operators.rows import Row
from operators.settings import DEFAULT_RULES, Rules
from operators.wallets import WalletShard


def _match(rules: Rules, state: Processor | None, raw: RawLine) -> tuple[Processor, list[Output]]:
    if state is None:
        state = new_processor(raw, rules)
    return state, state.process(raw)


def _for_wallets(item: tuple[str, list[Output]]) -> Iterable[tuple[str, WalletMessage]]:
    return [
        (wallet_shard_of(out), out)
        for out in item[1]
        if isinstance(out, (BetDecision, SettlementNotice))
    ]


class _WalletLogic(StatefulLogic[RawLine | WalletMessage, list[Row], WalletShard]):
    """Bytewax calls `on_item` per line or message of this shard, `on_eof` at the end of a
    finite input, `snapshot` at each epoch for recovery."""

    def __init__(self, shard: WalletShard | None) -> None:
        self.shard = shard or WalletShard()

    def on_item(self, value: RawLine | WalletMessage) -> tuple[list[list[Row]], bool]:
        rows = self.shard.line(value) if isinstance(value, RawLine) else self.shard.message(value)
        return ([rows] if rows else [], StatefulLogic.RETAIN)

    def on_eof(self) -> tuple[list[list[Row]], bool]:
        rows = self.shard.finish()
        return ([rows] if rows else [], StatefulLogic.RETAIN)

    def snapshot(self) -> WalletShard:
        return self.shard


@operator
def market_sync(
    step_id: str, lines: Stream[RawLine], rules: Rules = DEFAULT_RULES
) -> Stream[tuple[str, Sequence[object]]]:
    """Raw feed and bet lines in; per line, the rows it causes, keyed.

    In: `RawLine(source, bytes)`, in arrival order. Out: `(key, [row, ...])`; match lists
    also carry the wallet messages, which sinks skip.
    """
    keyed = op.flat_map("route", lines, route_line)  # shape: (key, RawLine), 1+ per line
    split = op.branch("split", keyed, lambda kv: not is_wallet_key(kv[0]))
    matched = op.stateful_map("match", split.trues, partial(_match, rules))
    # shape: (match key, [Row | WalletMessage])
    messages = op.flat_map("verdicts", matched, _for_wallets)  # shape: (shard, WalletMessage)
    to_wallets = op.merge("to_wallets", split.falses, messages)
    wallets = op.stateful("wallet", to_wallets, _WalletLogic)  # shape: (shard, [Row])
    rows = op.merge("rows", matched, wallets)
    return cast(Stream[tuple[str, Sequence[object]]], rows)  # lists of rows (and messages)
