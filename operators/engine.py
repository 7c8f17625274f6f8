"""Per-match processing: one `MatchProcessor` per key folds raw lines into output rows.

Plain Python: the dataflow keys lines by match and calls `process` for each, in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import Bet, Deposit, FeedEvent, Fixture, MatchEnd
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
        if isinstance(ev, Fixture):
            self.match = MatchState.from_fixture(ev)
            return [self.match.row(ev.ts)]
        match = self.match
        assert match is not None
        out: list[Row] = []
        if isinstance(ev, MatchEnd) and (match.home_score, match.away_score) != (
            ev.home_score,
            ev.away_score,
        ):
            detail = (
                f"official {ev.home_score}-{ev.away_score}, "
                f"from goal lines {match.home_score}-{match.away_score}"
            )
            out.append(_reject(raw, ev, "score_mismatch", detail))
        if match.apply(ev):
            out.append(match.row(ev.ts))
        return out


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
