"""Validation rules for feed lines, pure functions over a match's state.

Each rule answers with a reject reason code, or None when the line may be applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import (
    FOOTBALL_MAX_MINUTE,
    TENNIS_TYPES,
    Clock,
    FeedEvent,
    Fixture,
    Goal,
    MatchEnd,
)
from operators.match import MatchState
from operators.settings import Rules
from operators.tennis_match import TennisMatch

DUPLICATE = "duplicate"
_TENNIS = frozenset(TENNIS_TYPES)
OUT_OF_ORDER = "out_of_order"


@dataclass(slots=True)
class SeqTracker:
    """Sequence numbers seen from one provider for one match.

    `missing` holds the seqs skipped by a gap: such a line arriving later is out of order,
    any other seq at or below `last` is a duplicate.
    """

    last: int = 0
    missing: set[int] = field(default_factory=set)

    def check(self, seq: int) -> str | None:
        """The reason to reject `seq`, or None if it is new (not yet recorded: see `record`)."""
        if seq > self.last:
            return None
        return OUT_OF_ORDER if seq in self.missing else DUPLICATE

    def record(self, seq: int) -> tuple[int, int] | None:
        """Mark `seq` as received; the skipped range (first, last) if it opens a gap."""
        gap = (self.last + 1, seq - 1) if seq > self.last + 1 else None
        if gap is not None and gap[1] - gap[0] < 10_000:
            self.missing.update(range(gap[0], gap[1] + 1))
        self.last = seq
        return gap


def check_match(match: MatchState | TennisMatch | None, ev: FeedEvent, rules: Rules) -> str | None:
    """Rules that need the match: it must exist, be running, and the line must fit its state
    and its sport (`wrong_sport`: a tennis line for a football match, or the reverse)."""
    if isinstance(ev, Fixture):
        return "duplicate_fixture" if match is not None else None
    if match is None:
        return "unknown_match"
    if abs(ev.ts - match.kickoff) > rules.max_kickoff_distance_ms:
        return "ts_out_of_range"
    if match.status == "ended":
        return "match_over"
    if isinstance(match, TennisMatch):
        return match.check(ev)
    if type(ev) in _TENNIS:
        return "wrong_sport"
    if type(ev) is Clock and ev.minute > FOOTBALL_MAX_MINUTE:
        return "invalid_field:minute"
    if isinstance(ev, Goal):
        return _check_goal(match, ev)
    if isinstance(ev, MatchEnd) and match.period == 0:
        return "match_not_started"
    return None


_GOAL_MOVES = {
    (None, "possible"),
    ("possible", "confirmed"),
    ("possible", "disallowed"),
    ("confirmed", "disallowed"),
}


def _check_goal(match: MatchState, ev: Goal) -> str | None:
    known = match.goals.get(ev.goal_id)
    if known is None and ev.state != "possible":
        return "unknown_goal"
    if (known.state if known else None, ev.state) not in _GOAL_MOVES:
        return "bad_goal_state"
    if known is not None and known.team != ev.team:
        return "goal_team_changed"
    return None
