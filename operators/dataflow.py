"""Bytewax wiring of the per-match logic: the shared core of the replay and live flows."""

from __future__ import annotations

from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators.engine import MatchProcessor
from operators.parse import RawLine, route_key
from operators.rows import Row
from operators.settings import DEFAULT_RULES, Rules


def _process(
    rules: Rules, state: MatchProcessor | None, raw: RawLine
) -> tuple[MatchProcessor, list[Row]]:
    if state is None:
        state = MatchProcessor(rules)
    return state, state.process(raw)


@operator
def market_sync(
    step_id: str, lines: Stream[RawLine], rules: Rules = DEFAULT_RULES
) -> Stream[tuple[str, list[Row]]]:
    """Raw feed and bet lines in; per line, the output rows it causes, keyed by match.

    In: `RawLine(source, bytes)`, in arrival order. Out: `(key, [row, ...])`.
    """
    keyed = op.key_on("key", lines, route_key)  # shape: (key, RawLine)
    return op.stateful_map("match", keyed, partial(_process, rules))  # shape: (key, [Row])
