"""Match state built from the feed: teams, period, clock, score, cards, goals in review."""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import (
    FOOTBALL_MAX_MINUTE,
    Card,
    Clock,
    FeedEvent,
    Fixture,
    Goal,
    MatchEnd,
    PeriodEnd,
    PeriodStart,
)
from operators.rows import MatchRow, new_row

MINUTES_BEFORE = {1: 0, 2: 45, 3: 90, 4: 105}


@dataclass(slots=True)
class GoalRecord:
    team: str
    state: str


@dataclass(slots=True)
class MatchState:
    """One match as the feed describes it; `apply` folds one validated line in."""

    match_id: str
    provider: str
    home: str
    away: str
    kickoff: int
    home_rate: float
    away_rate: float
    period: int = 0
    status: str = "scheduled"  # scheduled -> live <-> break -> ended
    minute: int = 0
    second: int = 0
    period_start_ts: int = 0
    home_score: int = 0
    away_score: int = 0
    home_red: int = 0
    away_red: int = 0
    goals: dict[str, GoalRecord] = field(default_factory=dict)
    last_ts: int = 0

    max_minute = FOOTBALL_MAX_MINUTE  # class constants: the clock's last minute, the sport
    sport = "football"

    @classmethod
    def from_fixture(cls, ev: Fixture) -> MatchState:
        return cls(
            match_id=ev.match_id,
            provider=ev.provider,
            home=ev.home,
            away=ev.away,
            kickoff=ev.kickoff,
            home_rate=ev.home_rate,
            away_rate=ev.away_rate,
            last_ts=ev.ts,
        )

    def blank_copy(self, provider: str, ts: int) -> MatchState:
        """The same fixture as another provider will report it, from the start."""
        return MatchState(
            self.match_id,
            provider,
            self.home,
            self.away,
            self.kickoff,
            self.home_rate,
            self.away_rate,
            last_ts=ts,
        )

    @property
    def clock_minutes(self) -> float:
        """The pricing clock: held at 45 through first-half added time and the break."""
        minute = self.minute + self.second / 60
        return min(minute, 45.0) if self.period <= 1 else minute

    @property
    def scorers(self) -> list[str]:
        """Teams of the confirmed goals, in the order the goals were first reported."""
        return [g.team for g in self.goals.values() if g.state == "confirmed"]

    @property
    def in_play(self) -> bool:
        return self.status in ("live", "break")

    def scoreline(self) -> object:
        """What two providers must agree on."""
        return self.home_score, self.away_score

    def apply(self, ev: FeedEvent) -> bool:
        """Fold `ev` in; True when a `matches` column changed."""
        self.last_ts = max(self.last_ts, ev.ts)
        if isinstance(ev, Clock):
            changed = ev.minute != self.minute
            self.minute, self.second = ev.minute, ev.second
            return changed
        if isinstance(ev, PeriodStart):
            self.period, self.status = ev.period, "live"
            self.period_start_ts = ev.ts
            start = MINUTES_BEFORE.get(ev.period, self.minute)
            if start > self.minute:
                self.minute, self.second = start, 0
            return True
        if isinstance(ev, PeriodEnd):
            self.status = "break"
            return True
        if isinstance(ev, Goal):
            return self._apply_goal(ev)
        if isinstance(ev, Card) and ev.color != "yellow":
            if ev.team == "home":
                self.home_red += 1
            else:
                self.away_red += 1
            return True
        if isinstance(ev, MatchEnd):
            # The official result wins over the score built from goal lines.
            self.status = "ended"
            self.home_score, self.away_score = ev.home_score, ev.away_score
            return True
        return False

    def _apply_goal(self, ev: Goal) -> bool:
        known = self.goals.get(ev.goal_id)
        was_counted = known is not None and known.state == "confirmed"
        self.goals[ev.goal_id] = GoalRecord(ev.team, ev.state)
        delta = (ev.state == "confirmed") - was_counted
        if delta == 0:
            return False
        if ev.team == "home":
            self.home_score += delta
        else:
            self.away_score += delta
        return True

    def row(self, ts: int) -> MatchRow:
        return new_row(  # MatchRow's fields, in order
            MatchRow,
            (
                self.match_id,
                self.home,
                self.away,
                self.kickoff,
                self.period,
                self.minute,
                self.home_score,
                self.away_score,
                self.home_red,
                self.away_red,
                self.status,
                ts,
            ),
        )
