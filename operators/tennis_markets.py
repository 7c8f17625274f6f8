"""A tennis match's markets, on the shared market state machine (`operators.markets`).

Markets: `match`, `set_N` (the set in play), `game_N_G` (the game in play), `games_ou_X`
(total games) and `set_betting` (the score in sets), as `operators.tennis_pricing` names
them. Incidents suspend and reopen every market together, as in football; points reprice; a
decided market closes at once; everything settles at `match_end` (`TennisMarkets.settle`).
Serve-point probabilities: each player's prior updated by the serve points he has played.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.ladder import offered_prices
from operators.market_events import EventSink
from operators.markets import CLOSED, OPEN, SETTLED, SUSPENDED, Market, MarketBook
from operators.pricing import Book, implied_probabilities
from operators.tennis_match import SIDES, TennisMatch
from operators.tennis_pricing import TOUR_SERVE_WIN, fair_probabilities, serve_estimate

VOID = "void"


@dataclass(slots=True)
class TennisMarkets(MarketBook[TennisMatch]):
    """All markets of one tennis match; `results` holds each decided market's winner. Time
    alone moves no tennis price (no `tick`): points do (`point_played`)."""

    results: dict[str, str] = field(default_factory=dict)

    def open_book(self, match: TennisMatch, ts: int, out: EventSink) -> None:
        """Fixture: every market the pricer quotes before the first point, OPEN."""
        self.last_heard = ts
        self._refresh(match, ts, "fixture", out)

    def point_played(self, match: TennisMatch, ts: int, out: EventSink) -> None:
        """After a point: close what it decided, open the next game's and set's markets,
        new prices where an offered price moved."""
        played = match.last_point
        assert played is not None
        score = played.score
        if played.game_won_by is not None:
            self._decide("game_", SIDES[played.game_won_by], ts, out)
        if played.set_won_by is not None:
            self._decide("set_", SIDES[played.set_won_by], ts, out)  # not set_betting
        total = score.total_games()
        for name, market in self.markets.items():
            if name.startswith("games_ou_") and _alive(market) and total > float(name[9:]):
                self._close(market, "over", ts, out)
        if played.match_won_by is not None:
            sets = f"{score.sets[0]}-{score.sets[1]}"
            for name, market in self.markets.items():
                if _alive(market):
                    won = SIDES[played.match_won_by] if name == "match" else sets
                    self._close(market, "under" if name.startswith("games_ou_") else won, ts, out)
            return
        self._refresh(match, ts, "point", out)

    def stop(self, match: TennisMatch, reason: str, ts: int, out: EventSink) -> None:
        """A retirement or walkover: every market still open or suspended closes now."""
        for market in self.markets.values():
            if _alive(market):
                market.move(CLOSED, reason, ts, out)

    def settle(self, match: TennisMatch, ts: int, out: EventSink) -> None:
        """`match_end`: every market CLOSED, then SETTLED with its winner.

        A match played out: every market was decided by its points. A retirement or a
        walkover follows Betfair's tennis rules: `match` goes to the player who did not
        retire if at least one set was completed, else it is void; every other market
        stands if its result was already decided (a finished game or set, a totals line
        passed), else it is void. A walkover (no point played) voids everything."""
        fallback = VOID
        if match.stopped_by and not match.walkover and match.score.set_games:
            fallback = "away" if match.stopped_by == "home" else "home"
        for name, market in self.markets.items():
            if _alive(market):
                market.move(CLOSED, "match_end", ts, out)
            if market.status == CLOSED:
                won = self.results.get(name)
                if won is None:
                    won = fallback if name == "match" else VOID
                market.move(SETTLED, "match_end", ts, out, winner=won)
        self.incidents.clear()

    # ---- helpers ----------------------------------------------------------------------------

    def _decide(self, prefix: str, winner: str, ts: int, out: EventSink) -> None:
        """Close the one live market named `prefix<number>...` (the game's or the set's just
        won)."""
        at = len(prefix)
        for name, market in self.markets.items():
            if name.startswith(prefix) and name[at : at + 1].isdigit() and _alive(market):
                self._close(market, winner, ts, out)

    def _close(self, market: Market, winner: str, ts: int, out: EventSink) -> None:
        self.results[market.name] = winner
        market.move(CLOSED, "decided", ts, out)

    def _refresh(self, match: TennisMatch, ts: int, reason: str, out: EventSink) -> None:
        """One quote: markets new to it are created (OPEN, or SUSPENDED while incidents hold
        the book), OPEN ones get new prices where an offered price moved."""
        layout, fair, prices = self._quote(match, ts)
        markets = self.markets
        for name, selections, start, stop in layout:
            market = markets.get(name)
            offered = {s: (fair[i], prices[i]) for i, s in enumerate(selections, start)}
            if market is None:
                market = markets[name] = Market(self.match_id, name)
                if self.held:
                    market.move(SUSPENDED, next(iter(self.incidents.values()), "held"), ts, out)
                else:
                    market.move(OPEN, reason, ts, out, offered)
            elif (
                market.status == OPEN
                and [p for _, p in market.prices.values()] != prices[start:stop]
            ):
                market.move(OPEN, reason, ts, out, offered)

    def _quote(self, match: TennisMatch, ts: int) -> Book:
        """Every undecided market's fair probabilities and offered prices (the margin and
        the ladder as for football)."""
        self.last_priced = ts
        if match.over:
            return Book((), [], [])
        serve = serve_probabilities(match)
        fair_book = fair_probabilities(match.score, match.fmt, serve)
        layout = []
        fair: list[float] = []
        implied: list[float] = []
        for name, selections in fair_book.items():
            start = len(fair)
            fair += selections.values()
            implied += implied_probabilities(tuple(selections.values()), self.rules.margin)
            layout.append((name, tuple(selections), start, len(fair)))
        return Book(tuple(layout), fair, offered_prices(implied))


def serve_probabilities(match: TennisMatch) -> tuple[float, float]:
    """Each player's serve-point win probability now: his prior updated by his serve points."""
    tour = TOUR_SERVE_WIN
    home_prior, away_prior = match.serve_prior
    return (
        serve_estimate(
            tour if home_prior is None else home_prior, match.serve_won[0], match.serve_played[0]
        ),
        serve_estimate(
            tour if away_prior is None else away_prior, match.serve_won[1], match.serve_played[1]
        ),
    )


def _alive(market: Market) -> bool:
    return market.status in (OPEN, SUSPENDED)


__all__ = ["SETTLED", "TennisMarkets", "serve_probabilities"]
