"""Per-key processing: a `MatchProcessor` per match folds its lines into output rows and
into messages for the wallets; `LocalEngine` runs the whole thing in one thread.

Plain Python: the dataflow keys lines (`operators.parse.route`) and hands each key's lines,
in arrival order, to its processor. Inside, the markets speak in market events
(`operators.market_events`); they become rows here, as the output leaves the processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from operators.bets import BetDecision, MatchBets, SettlementNotice, WalletMessage, wallet_shard_of
from operators.events import (
    Bet,
    Card,
    Challenge,
    Clock,
    Deposit,
    FeedEvent,
    Fixture,
    GameEnd,
    Goal,
    MatchEnd,
    MedicalTimeout,
    Penalty,
    PeriodEnd,
    PeriodStart,
    Point,
    Retirement,
    SetEnd,
    Suspension,
    Var,
    Walkover,
    type_name,
)
from operators.market_events import EventSink, MarketEvent, project
from operators.markets import MarketBook, MatchMarkets
from operators.match import MatchState
from operators.parse import RawLine, is_wallet_key, parse_line
from operators.providers import Processor, new_processor, route_line
from operators.rows import FeedEventRow, FeedGapRow, Reject, Row, new_row
from operators.settings import DEFAULT_RULES, Rules
from operators.tennis_markets import TennisMarkets
from operators.tennis_match import TennisMatch
from operators.validate import SeqTracker, check_match
from operators.wallets import WalletShard

Output = Row | WalletMessage
Item = Output | MarketEvent  # what a line gives inside the processor, before `project`
AnyMatch = MatchState | TennisMatch  # the fixture's `sport` decides which


@dataclass(slots=True)
class MatchProcessor:
    """All state of one match key (or of the bucket of lines too broken to route). The
    fixture's `sport` picks the match state and markets: football's or tennis's; bets,
    their delay, wallets and exposure are the same for both.

    `process` is the one path every rule takes. `fast` lets runs of in-sequence heartbeats
    (most lines) take `_heartbeats`, a shortcut that must give exactly what `process` gives:
    tests/test_engine_fast_path.py runs whole feeds both ways (`GeneralPathProcessor`)."""

    fast: ClassVar[bool] = True  # a class attribute: snapshots pickle the same fields

    rules: Rules = DEFAULT_RULES
    match: AnyMatch | None = None
    markets: MarketBook[Any] | None = None  # MatchMarkets or TennisMarkets
    bets: MatchBets | None = None
    seqs: dict[str, SeqTracker] = field(default_factory=dict)
    backups: dict[str, AnyMatch] = field(default_factory=dict)  # views of other providers

    def process_lines(self, lines: Sequence[RawLine]) -> list[Output]:
        """Lines of this key, in order: exactly what `process` gives for each, in turn."""
        out: list[Output] = []
        i, n = 0, len(lines)
        while i < n:
            if self.fast:
                i = self._heartbeats(lines, i, out)
            if i < n:
                project(self._line(lines[i]), out)
                i += 1
        return out

    def process(self, raw: RawLine) -> list[Output]:
        """One line of this key: output rows, and verdicts/settlements for wallets."""
        return project(self._line(raw), [])

    def _line(self, raw: RawLine) -> list[Item]:
        """One line, its market changes still as market events (the bets read those)."""
        ev = parse_line(raw)
        if isinstance(ev, Reject):
            return [ev]
        if isinstance(ev, Deposit):  # routing sends deposits to wallets: it could not read it
            return [_reject_line(raw, "unroutable", "a deposit that routing could not read")]
        if self.bets is None:
            self.bets = MatchBets(self.rules)
        out: list[Item] = []
        if isinstance(ev, Bet):
            self._bet(raw, ev, out)
        else:
            self._feed(raw, ev, out)
        if self.bets.pending:  # bets in their delay window
            self.bets.review(out, ev.ts, out)
        return out

    @property
    def last_ts(self) -> int:
        """The latest event time this match has seen (0 before its fixture)."""
        return self.match.last_ts if self.match is not None else 0

    def next_due(self) -> int | None:
        """The event time of the next timer (provider silence, a reopening), if any."""
        if self.match is None or self.markets is None:
            return None
        return self.markets.next_due(self.match)

    def idle(self, ts: int) -> list[Output]:
        """No line, but event time reached `ts` (a live flow's wall clock says so): fire what
        is due, as the next line would have."""
        out: list[Item] = []
        if self.match is not None and self.markets is not None and self.bets is not None:
            self.markets.advance(self.match, ts, out)
            self.bets.review(out, ts, out)
        return project(out, [])

    def _bet(self, raw: RawLine, bet: Bet, out: list[Item]) -> None:
        match, markets, bets = self.match, self.markets, self.bets
        assert bets is not None
        if match is not None and markets is not None:
            markets.advance(match, bet.ts, out)
        bets.judge(raw.source, bet, markets, match is not None and match.in_play, out)

    def _feed(self, raw: RawLine, ev: FeedEvent, out: list[Item]) -> None:
        if self.match is None and not isinstance(ev, Fixture):
            out.append(_reject(raw, ev, "unknown_match"))
            return
        tracker = self.seqs.get(ev.provider)
        if tracker is None:
            tracker = self.seqs[ev.provider] = SeqTracker()
        reason = tracker.check(ev.seq)
        if reason is None:
            gap = tracker.record(ev.seq)
            if gap is not None:
                out.append(FeedGapRow(ev.provider, ev.match_id, gap[0], gap[1], ev.ts))
            view = self._view(ev)
            reason = check_match(view, ev, self.rules)
            if reason is None and type(view) is TennisMatch and type(ev) in _TENNIS_ENDS:
                detail = view.disagreement(ev)  # the provider's own ends against the points
                if detail is not None:
                    out.append(_reject(raw, ev, "score_mismatch", detail))
                    if isinstance(ev, MatchEnd) and self.bets is not None:
                        self.bets.notice_rejected_end(raw.source, ev.match_id, ev.ts, out)
                    return
        if reason is not None:
            out.append(_reject(raw, ev, reason))
            if isinstance(ev, MatchEnd) and self.bets is not None:
                self.bets.notice_rejected_end(raw.source, ev.match_id, ev.ts, out)
            return
        out.append(_event_row(raw, ev))
        if self.match is None or ev.provider == self.match.provider:
            self._apply(raw, ev, out)
        else:
            self._backup(ev, out)
        if self.backups:
            self._compare_providers(ev.ts, out)

    def _heartbeats(self, lines: Sequence[RawLine], i: int, out: list[Output]) -> int:
        """The fast path: the run of heartbeats of the driving provider in sequence from
        `lines[i]` on, what `process` does with each (valid, no gap, nothing for `_react`,
        `advance` with nothing to do) without its parsing, dispatch and checks. Stops, having
        changed nothing for it, at the first line that is anything else or meets anything
        rarer (silence, a reopening due, bets in their delay): `process` takes that one.
        The index of the first line not taken."""
        match, markets, bets = self.match, self.markets, self.bets
        if match is None or markets is None or bets is None:
            return i
        provider = match.provider
        tracker = self.seqs.get(provider)
        if tracker is None:
            return i
        rules = self.rules
        kickoff, far = match.kickoff, rules.max_kickoff_distance_ms
        silent_after = rules.heartbeat_timeout_ms
        max_minute = match.max_minute
        moved: list[MarketEvent] = []
        n = len(lines)
        while i < n:
            raw = lines[i]
            ev = raw.event or parse_line(raw)  # decoded by `route` unless it crossed workers
            if (
                type(ev) is not Clock
                or raw.rejected
                or ev.provider != provider
                or ev.seq != tracker.last + 1
                or bets.pending
                or (markets.held and not markets.incidents)  # a reopening may be due
                or match.status == "ended"
                or "feed_silent" in markets.incidents
            ):
                return i
            ts = ev.ts
            if abs(ts - kickoff) > far or ts > markets.last_heard + silent_after:
                return i
            if ev.minute > max_minute:
                return i
            tracker.last = ev.seq
            out.append(_event_row(raw, ev))
            if match.apply(ev):
                out.append(match.row(ts))
            markets.heard(match, ts, moved)
            markets.tick(match, ts, moved)
            if self.backups:
                self._compare_providers(ts, moved)
            if moved:
                project(moved, out)
                moved.clear()
            i += 1
        return i

    def _view(self, ev: FeedEvent) -> AnyMatch | None:
        """The match as `ev`'s provider reported it so far (a backup's view starts at the
        fixture when its first line comes)."""
        match = self.match
        if match is None or ev.provider == match.provider:
            return match
        view = self.backups.get(ev.provider)
        if view is None and not isinstance(ev, Fixture):
            view = self.backups[ev.provider] = match.blank_copy(ev.provider, ev.ts)
        return view

    def _backup(self, ev: FeedEvent, out: list[Item]) -> None:
        """A line from a provider that does not drive the match: kept in its own view;
        it takes over when the driving provider goes silent."""
        match, markets = self.match, self.markets
        assert match is not None and markets is not None
        view = self.backups.get(ev.provider)
        if isinstance(ev, Fixture) and view is None:
            view = self.backups[ev.provider] = match.blank_copy(ev.provider, ev.ts)
        assert view is not None
        view.apply(ev)
        markets.advance(match, ev.ts, out)
        silent = ev.ts - markets.last_heard > self.rules.heartbeat_timeout_ms
        if silent and match.in_play and view.in_play:
            self._switch_to(ev.provider, ev.ts, out)

    def _switch_to(self, provider: str, ts: int, out: list[Item]) -> None:
        """The backup drives from now on: suspend for the switch, reprice from its view."""
        old, markets = self.match, self.markets
        assert old is not None and markets is not None
        self.backups[old.provider] = old
        self.match = new = self.backups.pop(provider)
        out.append(new.row(ts))
        if isinstance(new, TennisMatch) and isinstance(old, TennisMatch):
            # the score row follows the new driver; its version keeps rising across views
            new.score_version = max(new.score_version, old.score_version) + 1
            out.append(new.score_row(ts))
        markets.incident("provider_switch", "provider_switch", ts, out)
        markets.heard(new, ts, out)
        markets.resolve("provider_switch", new, ts, out)

    def _compare_providers(self, ts: int, out: EventSink) -> None:
        """Suspend while an active backup's score disagrees with the driving provider's."""
        match, markets = self.match, self.markets
        if match is None or markets is None or not self.backups or match.status == "ended":
            return
        score = match.scoreline()
        disagree = any(
            v.scoreline() != score
            for v in self.backups.values()
            if ts - v.last_ts <= self.rules.heartbeat_timeout_ms
        )
        if disagree and "provider_conflict" not in markets.incidents:
            markets.incident("provider_conflict", "provider_conflict", ts, out)
        elif not disagree and "provider_conflict" in markets.incidents:
            markets.resolve("provider_conflict", match, ts, out)

    def _apply(self, raw: RawLine, ev: FeedEvent, out: list[Item]) -> None:
        if isinstance(ev, Fixture):
            if ev.sport == "tennis":
                self._open_tennis(ev, out)
                return
            fresh = self.match = MatchState.from_fixture(ev)
            self.markets = MatchMarkets(self.rules, ev.match_id)
            out.append(fresh.row(ev.ts))
            self.markets.open_book(fresh, ev.ts, out)
            return
        match, bets = self.match, self.bets
        assert match is not None and self.markets is not None and bets is not None
        if isinstance(match, TennisMatch):
            self._apply_tennis(raw, ev, match, cast(TennisMarkets, self.markets), bets, out)
            return
        markets = cast(MatchMarkets, self.markets)
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
        if type(ev) in _REACTIVE:
            _react(match, markets, ev, score, out)
        markets.tick(match, ev.ts, out)
        if isinstance(ev, Card) and ev.color != "yellow":
            bets.red_card()
        elif isinstance(ev, MatchEnd):
            bets.review(out, ev.ts, out)  # bets still in their delay see the close first
            bets.settle(raw.source, ev.match_id, out, ev.ts, out)

    # ---- tennis --------------------------------------------------------------------------

    def _open_tennis(self, ev: Fixture, out: list[Item]) -> None:
        fresh = self.match = TennisMatch.from_fixture(ev)
        markets = self.markets = TennisMarkets(self.rules, ev.match_id)
        out.append(fresh.row(ev.ts))
        out.append(fresh.score_row(ev.ts))
        markets.open_book(fresh, ev.ts, out)

    def _apply_tennis(
        self,
        raw: RawLine,
        ev: FeedEvent,
        match: TennisMatch,
        markets: TennisMarkets,
        bets: MatchBets,
        out: list[Item],
    ) -> None:
        """A validated line of a tennis match's driving provider (its ends already agree
        with the points: `_feed`)."""
        ts = ev.ts
        markets.advance(match, ts, out)
        if match.apply(ev):
            out.append(match.row(ts))
        if type(ev) in _TENNIS_SCORE_LINES:
            out.append(match.score_row(ts))
        if not isinstance(ev, MatchEnd):
            markets.heard(match, ts, out)
        if isinstance(ev, Point):
            markets.point_played(match, ts, out)
        elif isinstance(ev, (Challenge, MedicalTimeout, Suspension)):
            key, reason = _TENNIS_INCIDENTS[type(ev)]
            if isinstance(ev, MedicalTimeout):
                key = f"{key}:{ev.player}"
            if ev.state == "start":
                markets.incident(key, reason, ts, out)
            else:
                markets.resolve(key, match, ts, out)
        elif isinstance(ev, (Retirement, Walkover)):
            markets.stop(match, type_name(ev), ts, out)
        elif isinstance(ev, MatchEnd):
            markets.settle(match, ts, out)
            bets.review(out, ts, out)  # bets still in their delay see the close first
            bets.settle(raw.source, ev.match_id, out, ts, out)


@dataclass(slots=True)
class GeneralPathProcessor(MatchProcessor):
    """A `MatchProcessor` without the fast path: every line through `process`."""

    fast: ClassVar[bool] = False


# The provider's own ends of games, sets and matches: checked against the points (tennis).
_TENNIS_ENDS = frozenset((GameEnd, SetEnd, MatchEnd))
# Tennis lines that change the `tennis_scores` row.
_TENNIS_SCORE_LINES = frozenset((Point, Retirement, Walkover, MatchEnd))
# Tennis incidents: line type -> (incident key, suspension reason).
_TENNIS_INCIDENTS: dict[type, tuple[str, str]] = {
    Challenge: ("challenge", "challenge"),
    MedicalTimeout: ("medical_timeout", "medical_timeout"),
    Suspension: ("suspension", "suspension"),
}

# Line types that can move the markets by themselves (clock, foul, corner ... cannot).
_REACTIVE = frozenset((Goal, Penalty, Card, Var, PeriodStart, PeriodEnd, MatchEnd))


def _react(
    match: MatchState,
    markets: MatchMarkets,
    ev: FeedEvent,
    score_before: tuple[int, int],
    out: EventSink,
) -> None:
    """What a football line does to the markets: incidents suspend, their end reopens,
    a confirmed goal closes what it decided, a period boundary reprices, the end settles."""
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


def _event_row(raw: RawLine, ev: FeedEvent) -> FeedEventRow:
    """The `feed_events` row of an accepted line."""
    row = (ev.provider, ev.match_id, ev.seq, ev.ts, type_name(ev), _text(raw), raw.source)
    return new_row(FeedEventRow, row)


def _text(raw: RawLine) -> str:
    return raw.data.decode("utf-8", errors="replace")


def _reject_line(raw: RawLine, reason: str, detail: str) -> Reject:
    return Reject(raw.source, reason, detail, _text(raw), None, None, None)


def _reject(raw: RawLine, ev: FeedEvent, reason: str, detail: str = "") -> Reject:
    return Reject(
        source=raw.source,
        reason=reason,
        detail=detail or f"{reason} ({type_name(ev)} seq {ev.seq})",
        raw=_text(raw),
        ts=ev.ts,
        provider=ev.provider,
        match_id=ev.match_id,
    )


class LocalEngine:
    """The whole per-line logic in one thread, in feed order: every match processor and
    wallet shard, verdicts delivered at once. What the dataflow computes, as plain calls
    (for tests, benchmarks and the simulator's checks)."""

    def __init__(self, rules: Rules = DEFAULT_RULES) -> None:
        self.rules = rules
        self.matches: dict[str, Processor] = {}
        self.shards: dict[str, WalletShard] = {}

    def line(self, raw: RawLine) -> list[Row]:
        rows: list[Row] = []
        for key, item in route_line(raw):
            if is_wallet_key(key):
                rows.extend(self._shard(key).line(item))
                continue
            proc = self.matches.get(key)
            if proc is None:
                proc = self.matches[key] = new_processor(item, self.rules)
            for out in proc.process_lines((item,)):
                if isinstance(out, (BetDecision, SettlementNotice)):
                    rows.extend(self._shard(wallet_shard_of(out)).message(out))
                else:
                    rows.append(out)
        return rows

    def finish(self) -> list[Row]:
        """End of input: what wallets still hold."""
        return [row for shard in self.shards.values() for row in shard.finish()]

    def _shard(self, key: str) -> WalletShard:
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = WalletShard()
        return shard
