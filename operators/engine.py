"""Per-match processing: one `MatchProcessor` per key folds raw lines into output rows.

Plain Python: the dataflow keys lines by match and calls `process` for each, in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import (
    Bet,
    Card,
    Deposit,
    FeedEvent,
    Fixture,
    Goal,
    MatchEnd,
    Penalty,
    PeriodEnd,
    PeriodStart,
    Var,
)
from operators.markets import MatchMarkets
from operators.match import MatchState
from operators.parse import RawLine, parse_line
from operators.rows import FeedEventRow, FeedGapRow, Reject, Row
from operators.settings import DEFAULT_RULES, Rules
from operators.validate import SeqTracker, check_match


@dataclass(slots=True)
class MatchProcessor:
    """All state of one key (a match; or the bucket of unparseable lines)."""

    rules: Rules = DEFAULT_RULES
    match: MatchState | None = None
    markets: MatchMarkets | None = None
    seqs: dict[str, SeqTracker] = field(default_factory=dict)

    def process(self, raw: RawLine) -> list[Row]:
        ev = parse_line(raw)
        if isinstance(ev, Reject):
            return [ev]
        if isinstance(ev, (Deposit, Bet)):
            return []
        return self._feed(raw, ev)

    def _feed(self, raw: RawLine, ev: FeedEvent) -> list[Row]:
        if self.match is None and not isinstance(ev, Fixture):
            return [_reject(raw, ev, "unknown_match")]
        tracker = self.seqs.get(ev.provider)
        if tracker is None:
            tracker = self.seqs[ev.provider] = SeqTracker()
        reason = tracker.check(ev.seq)
        if reason is not None:
            return [_reject(raw, ev, reason)]
        out: list[Row] = []
        gap = tracker.record(ev.seq)
        if gap is not None:
            out.append(FeedGapRow(ev.provider, ev.match_id, gap[0], gap[1], ev.ts))
        reason = check_match(self.match, ev, self.rules)
        if reason is not None:
            out.append(_reject(raw, ev, reason))
            return out
        out.append(
            FeedEventRow(ev.provider, ev.match_id, ev.seq, ev.ts, _type(ev), _text(raw), raw.source)
        )
        out.extend(self._apply(raw, ev))
        return out

    def _apply(self, raw: RawLine, ev: FeedEvent) -> list[Row]:
        out: list[Row] = []
        if isinstance(ev, Fixture):
            self.match = match = MatchState.from_fixture(ev)
            self.markets = MatchMarkets(self.rules, ev.match_id)
            out.append(match.row(ev.ts))
            self.markets.open_book(match, ev.ts, out)
            return out
        match, markets = self.match, self.markets
        assert match is not None and markets is not None
        markets.advance(match, ev.ts, out)
        if isinstance(ev, MatchEnd) and (match.home_score, match.away_score) != (
            ev.home_score,
            ev.away_score,
        ):
            detail = (
                f"official {ev.home_score}-{ev.away_score}, "
                f"from goal lines {match.home_score}-{match.away_score}"
            )
            out.append(_reject(raw, ev, "score_mismatch", detail))
        score = (match.home_score, match.away_score)
        if match.apply(ev):
            out.append(match.row(ev.ts))
        if ev.provider == match.provider and not isinstance(ev, MatchEnd):
            markets.heard(match, ev.ts, out)
        _react(match, markets, ev, score, out)
        markets.tick(match, ev.ts, out)
        return out


def _react(
    match: MatchState,
    markets: MatchMarkets,
    ev: FeedEvent,
    score_before: tuple[int, int],
    out: list[Row],
) -> None:
    """What a line does to the markets (CONTRACT section 2)."""
    ts = ev.ts
    if isinstance(ev, Goal):
        key = f"goal:{ev.goal_id}"
        if ev.state == "possible":
            markets.incident(key, "goal_possible", ts, out)
            return
        if score_before != (match.home_score, match.away_score):
            if key not in markets.incidents:  # a confirmed goal undone after the reopening
                markets.incident(key, "goal_disallowed", ts, out)
            markets.goals_changed(match, ts, out)
        markets.resolve(key, match, ts, out)
    elif isinstance(ev, Penalty):
        key = f"penalty:{ev.team}"
        if ev.state == "awarded":
            markets.incident(key, "penalty_awarded", ts, out)
        else:
            markets.resolve(key, match, ts, out)
    elif isinstance(ev, Card) and ev.color != "yellow":
        key = f"card:{ev.seq}"  # resolved by its repricing, held for the minimum
        markets.incident(key, "red_card", ts, out)
        markets.resolve(key, match, ts, out)
    elif isinstance(ev, Var):
        if ev.state == "start":
            markets.incident("var", "var", ts, out)
        else:
            markets.resolve("var", match, ts, out)
    elif isinstance(ev, (PeriodStart, PeriodEnd)):
        markets.reprice(match, ts, "period", out)
    elif isinstance(ev, MatchEnd):
        markets.settle(match, match.scorers, ts, out)


def _type(ev: FeedEvent) -> str:
    return ev.__struct_config__.tag  # type: ignore[return-value]


def _text(raw: RawLine) -> str:
    return raw.data.decode("utf-8", errors="replace")


def _reject(raw: RawLine, ev: FeedEvent, reason: str, detail: str = "") -> Reject:
    return Reject(
        source=raw.source,
        reason=reason,
        detail=detail or f"{reason} ({_type(ev)} seq {ev.seq})",
        raw=_text(raw),
        ts=ev.ts,
        provider=ev.provider,
        match_id=ev.match_id,
    )
