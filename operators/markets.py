"""The market state machine of one match, shared by every sport; football's book.

Every market moves only through `Market.move`, which allows exactly the transitions of
`ALLOWED`, bumps `version` and emits one market event (`operators.market_events`).
`MarketBook` decides when: an incident suspends every market at once; they reopen together,
repriced, once every incident is resolved and the hold time has passed. Event time only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from operators.market_events import (
    EventSink,
    MarketClosed,
    MarketReopened,
    MarketRepriced,
    MarketSettled,
    MarketSuspended,
    Prices,
)
from operators.match import MatchState
from operators.pricing import MARKETS_OU, Book, PricingState, quote_book
from operators.settings import Rules

OPEN, SUSPENDED, CLOSED, SETTLED = "OPEN", "SUSPENDED", "CLOSED", "SETTLED"
ALLOWED: dict[str, frozenset[str]] = {
    OPEN: frozenset({SUSPENDED, CLOSED}),
    SUSPENDED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset({SETTLED, SUSPENDED}),  # back to SUSPENDED only when a goal is undone
    SETTLED: frozenset(),
}
FIXED_MARKETS = ("1x2", *MARKETS_OU)


class IllegalTransition(RuntimeError):
    """A move `ALLOWED` forbids: a bug in the caller, never a feed problem."""


@dataclass(slots=True)
class Market:
    match_id: str
    name: str
    status: str = SUSPENDED
    version: int = 0
    reason: str = ""
    prices: Prices = field(default_factory=dict)
    winner: str | None = None

    def move(
        self,
        status: str,
        reason: str,
        ts: int,
        out: EventSink,
        prices: Prices | None = None,
        winner: str | None = None,
    ) -> None:
        """Change status: one new version, one event. Prices come exactly with OPEN (an
        opening or a repricing), a winner exactly with SETTLED."""
        was = self.status
        if status != was and status not in ALLOWED[was]:
            raise IllegalTransition(f"{self.match_id}/{self.name}: {was} -> {status}")
        if (prices is not None) != (status == OPEN) or (winner is not None) != (status == SETTLED):
            what = f"{status} with prices {prices} and winner {winner}"
            raise IllegalTransition(f"{self.match_id}/{self.name}: {what}")
        version = self.version + 1
        self.status, self.reason, self.winner, self.version = status, reason, winner, version
        match_id, name = self.match_id, self.name
        if prices is not None:
            self.prices = prices
            if was == OPEN:
                out.append(MarketRepriced(match_id, name, version, reason, ts, prices))
            else:
                out.append(MarketReopened(match_id, name, version, reason, ts, prices))
        elif winner is not None:
            out.append(MarketSettled(match_id, name, version, reason, ts, winner))
        elif status == SUSPENDED:
            out.append(MarketSuspended(match_id, name, version, reason, ts))
        else:
            out.append(MarketClosed(match_id, name, version, reason, ts))


class Priced(Protocol):
    """What the market machinery reads of a match state (football's or tennis's)."""

    status: str

    @property
    def in_play(self) -> bool: ...


M = TypeVar("M", bound=Priced)


@dataclass(slots=True)
class MarketBook(Generic[M]):
    """All markets of one match, the open incidents, and the event-time timers: the rules
    every sport shares. A sport says which markets there are and how they are priced
    (`_quote`), and when they close and settle."""

    rules: Rules
    match_id: str
    markets: dict[str, Market] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # incident id -> trigger reason
    hold_until: int = 0  # no reopening before this event time
    calm_since: int = 0  # when the last incident was resolved
    held: bool = False  # suspended by incidents, not reopened yet
    last_priced: int = 0
    last_heard: int = 0  # last line from the match's provider

    # ---- triggers -------------------------------------------------------------------

    def incident(self, key: str, reason: str, ts: int, out: EventSink) -> None:
        """An incident opens: suspend every OPEN market at once, hold for the minimum."""
        self.incidents[key] = reason
        self.held = True
        self.hold_until = max(self.hold_until, ts + self.rules.min_suspension_ms)
        for market in self.markets.values():
            if market.status == OPEN:
                market.move(SUSPENDED, reason, ts, out)

    def resolve(self, key: str, match: M, ts: int, out: EventSink) -> None:
        """An incident ends; reopen now if nothing else holds the markets."""
        if self.incidents.pop(key, None) is None or self.incidents:
            return
        self.calm_since = ts
        if ts >= self.hold_until:
            self._reopen(match, ts, "reopen", out)

    def heard(self, match: M, ts: int, out: EventSink) -> None:
        """A line from the match's provider: the feed is alive."""
        if ts > self.last_heard:
            self.last_heard = ts
        if "feed_silent" in self.incidents:
            self.resolve("feed_silent", match, ts, out)

    def advance(self, match: M, ts: int, out: EventSink) -> None:
        """Event time moved to `ts` (before the line at `ts` is applied): the provider's
        silence, then a reopening that fell due in between, at the time it fell due."""
        silent_since = self.last_heard + self.rules.heartbeat_timeout_ms
        if ts > silent_since and match.in_play and "feed_silent" not in self.incidents:
            self.incident("feed_silent", "feed_silent", silent_since, out)
        if self.held and not self.incidents:
            due = max(self.calm_since, self.hold_until)
            if ts >= due:
                self._reopen(match, due, "reopen", out)

    def next_due(self, match: M) -> int | None:
        """When `advance` would next act: a due reopening, or the provider's silence."""
        if self.held and not self.incidents:
            return max(self.calm_since, self.hold_until)
        if match.in_play and "feed_silent" not in self.incidents:
            return self.last_heard + self.rules.heartbeat_timeout_ms + 1
        return None

    def tick(self, match: M, ts: int, out: EventSink) -> None:
        """After a line is applied: what time alone does to the prices (nothing, unless a
        sport says otherwise)."""

    # ---- prices --------------------------------------------------------------------------

    def reprice(self, match: M, ts: int, reason: str, out: EventSink) -> None:
        """New prices for OPEN markets whose offered prices changed."""
        markets = self.markets
        for candidate in markets.values():
            if candidate.status == OPEN:
                break
        else:
            return  # nothing to reprice (a loop: any() over a generator costs more)
        layout, fair, prices = self._quote(match, ts)
        for name, selections, start, stop in layout:
            market = markets.get(name)
            # Its prices came from the pricer too: same selections in the same order.
            if (
                market is not None
                and market.status == OPEN
                and [price for _, price in market.prices.values()] != prices[start:stop]
            ):
                market.move(OPEN, reason, ts, out, _prices(selections, start, fair, prices))

    def _reopen(self, match: M, ts: int, reason: str, out: EventSink) -> None:
        """Open the SUSPENDED markets the pricer quotes (decided ones are CLOSED)."""
        self.held = False
        layout, fair, prices = self._quote(match, ts)
        for name, selections, start, _ in layout:
            market = self.markets.get(name)
            if market is not None and market.status == SUSPENDED:
                market.move(OPEN, reason, ts, out, _prices(selections, start, fair, prices))

    def _quote(self, match: M, ts: int) -> Book:
        """Every undecided market's fair probabilities and offered prices now."""
        raise NotImplementedError


@dataclass(slots=True)
class MatchMarkets(MarketBook[MatchState]):
    """A football match's markets: `1x2`, `ou_k.5`, `goal_N`."""

    def open_book(self, match: MatchState, ts: int, out: EventSink) -> None:
        """Fixture: every market OPEN, priced pre-match."""
        for name in (*FIXED_MARKETS, "goal_1"):
            self.markets[name] = Market(self.match_id, name)
        self.last_heard = ts
        self._reopen(match, ts, "fixture", out)

    def tick(self, match: MatchState, ts: int, out: EventSink) -> None:
        """After a line is applied: time decay, new prices at least once a match minute."""
        # The clock stands still at half time: nothing decays then.
        if match.status == "live" and ts - self.last_priced >= self.rules.reprice_every_ms:
            self.reprice(match, ts, "reprice", out)

    # ---- goals and results -------------------------------------------------------------

    def goals_changed(self, match: MatchState, ts: int, out: EventSink) -> None:
        """The confirmed score moved: close decided markets, create or hold `goal_N`."""
        total = match.home_score + match.away_score
        for name, market in self.markets.items():
            decided = _decided(name, total)
            if decided and market.status in (OPEN, SUSPENDED):
                market.move(CLOSED, "decided", ts, out)
            elif not decided and market.status == CLOSED:
                market.move(SUSPENDED, "goal_disallowed", ts, out)
        current = f"goal_{total + 1}"
        if current not in self.markets:
            self.markets[current] = Market(self.match_id, current)
            self.markets[current].move(SUSPENDED, "goal_confirmed", ts, out)

    def settle(self, match: MatchState, scorers: list[str], ts: int, out: EventSink) -> None:
        """match_end: every market CLOSED, then SETTLED with its winner."""
        for name, market in self.markets.items():
            if market.status in (OPEN, SUSPENDED):
                market.move(CLOSED, "match_end", ts, out)
            if market.status == CLOSED:
                market.move(
                    SETTLED,
                    "match_end",
                    ts,
                    out,
                    winner=winner(name, match.home_score, match.away_score, scorers),
                )
        self.incidents.clear()

    def _quote(self, match: MatchState, ts: int) -> Book:
        self.last_priced = ts
        state = PricingState.trusted(
            match.home_rate,
            match.away_rate,
            match.clock_minutes,
            match.home_score,
            match.away_score,
            match.home_red,
            match.away_red,
        )
        return quote_book(state, self.rules.margin)


def _prices(
    selections: tuple[str, ...], start: int, fair: list[float], prices: list[Decimal]
) -> Prices:
    """`Market.prices` for the market whose `selections` start at `start` in a `Book`."""
    return {selection: (fair[i], prices[i]) for i, selection in enumerate(selections, start)}


def _decided(name: str, total: int) -> bool:
    """Is this market's outcome known from the confirmed goals alone?"""
    if name.startswith("ou_"):
        return total > float(name[3:])
    if name.startswith("goal_"):
        return total >= int(name[5:])
    return False


def winner(name: str, home: int, away: int, scorers: list[str]) -> str:
    """The winning selection of market `name` for the final score; `scorers` are the teams of
    the confirmed goals in order (`goal_N` markets). A goal the lines never named: `void`."""
    if name == "1x2":
        return "home" if home > away else "away" if away > home else "draw"
    if name.startswith("ou_"):
        return "over" if home + away > float(name[3:]) else "under"
    n = int(name[5:])
    if n <= len(scorers):
        return scorers[n - 1]
    return "none" if n > home + away else "void"
