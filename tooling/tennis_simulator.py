"""Simulated tennis matches for `oddsflow simulate --sport tennis|mixed` (native tennis lines).

A match is played point by point from the model the pricer uses: each player wins a point
on his own serve with his serve-point probability (the fixture's `home_serve` /
`away_serve`, drawn per player around `TOUR_SERVE_WIN`, the same for a player in every
match of a seed), each point independent. The score is `operators.tennis_score`'s, and the
provider's `game_end` / `set_end` / `match_end` follow the points as the real-data adapter
sends them.

Time: points 20-55 s apart; `clock` heartbeats every 5 s from the start to `match_end`
(minutes since the start, as the real-data adapter counts them). Incidents, each of which
suspends the markets while it lasts: a `challenge` before about 3 % of points (the point
comes after it), a `medical_timeout` (3-6 min) or a rain `suspension` (10-45 min) now and
then; a `retirement` ends about 2 % of matches (then `match_end` with the sets as they
stand) and a `walkover` about 1 % (before the first point; `match_end` 0-0).

Bets: on the tennis markets (`match`, `set_n`, `game_n_g`, `games_ou_x`, `set_betting`) at
the price the engine offers at that moment (its serve estimates, margin and ladder), with
the football simulator's mix of bets the engine must refuse (during a suspension, a
stale price, a stake over the wallet, a decided set's market, an unknown market) and its
faulty lines, less the football-only kinds (a goal, a foul sent out of order).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from typing import Any

from operators.adapters.tennis_pbp import score_checks
from operators.ladder import offered_prices
from operators.pricing import implied_probabilities
from operators.tennis_pricing import TOUR_SERVE_WIN, fair_probabilities, serve_estimate
from operators.tennis_score import TennisFormat, TennisScore, play_point, start
from tooling.simulator import (
    FIXTURE_LEAD_MS,
    HEARTBEAT_MS,
    Bettors,
    SimLine,
    _FaultInjector,
    _sequenced,
    _Settings,
)

Payload = dict[str, Any]
SIDES = ("home", "away")
POINT_GAP_MS = (20_000, 55_000)
CHALLENGE_SHARE = 0.03  # of points
CHALLENGE_MS = (15_000, 40_000)
MEDICAL_PER_POINT = 0.0003
MEDICAL_MS = (3 * 60_000, 6 * 60_000)
RAIN_PER_POINT = 0.0004
RAIN_MS = (10 * 60_000, 45 * 60_000)
RETIREMENT_PER_POINT = 0.00015
WALKOVER_SHARE = 0.01
ACE_SHARE = 0.12  # of serve points won
DOUBLE_FAULT_SHARE = 0.08  # of serve points lost
BEST_OF_5_SHARE = 0.25

# fmt: off
_FIRST = ("A.", "B.", "C.", "D.", "E.", "F.", "G.", "H.", "J.", "K.", "L.", "M.", "N.", "P.")
_LAST = (
    "Almeida", "Berger", "Castillo", "Dimitrov", "Engel", "Fonseca", "Grant", "Halvorsen",
    "Ito", "Jovanovic", "Kuznetsov", "Lindqvist", "Moreno", "Novak", "Ortega", "Petrov",
    "Quintero", "Rasmussen", "Sato", "Tomic", "Ueda", "Vasquez", "Weber", "Young", "Zeller",
)
# fmt: on
_PLAYERS = len(_FIRST) * len(_LAST)


def tennis_match_lines(n: int, kickoff: int, settings: _Settings) -> list[tuple[int, SimLine]]:
    """Match n as a tennis match: its lines (feed, bets, faults) as (sort ts, line)."""
    rng = random.Random(f"{settings.seed}:{n}")
    match_id = f"sim-{settings.seed}-{n + 1}"
    (home, home_serve), (away, away_serve) = _players(rng, settings.seed)
    fmt = _format(rng)
    first = rng.randrange(2)
    fixture_ts = kickoff - rng.randrange(*FIXTURE_LEAD_MS)
    match = _TennisTimeline(rng, kickoff, fmt, first, (home_serve, away_serve))
    match.play()
    fixture = {
        "sport": "tennis",
        "home": home,
        "away": away,
        "kickoff": kickoff,
        "best_of": fmt.best_of,
        "first_server": SIDES[first],
        "final_set_tiebreak": fmt.final_set_tiebreak,
        "home_serve": home_serve,
        "away_serve": away_serve,
    }
    feed = _sequenced(match_id, [(fixture_ts, "fixture", fixture), *match.with_heartbeats()])
    bets = _TennisBettors(rng, match_id, fixture_ts, match, settings).lines()
    entries = sorted([*feed, *bets], key=lambda e: e.sort_ts)
    return _TennisFaults(rng, entries, match_id, kickoff, kickoff).run(settings.fault_rate)


def _players(rng: random.Random, seed: int) -> tuple[tuple[str, float], tuple[str, float]]:
    home, away = rng.sample(range(_PLAYERS), 2)
    return (_name(home), _serve(seed, home)), (_name(away), _serve(seed, away))


def _name(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[i // len(_FIRST)]}"


def _serve(seed: int, player: int) -> float:
    """A player's serve-point probability, the same in every match of a seed."""
    return round(TOUR_SERVE_WIN + random.Random(f"{seed}:player:{player}").uniform(-0.06, 0.06), 3)


def _format(rng: random.Random) -> TennisFormat:
    if rng.random() < BEST_OF_5_SHARE:
        return TennisFormat(best_of=5, final_set_tiebreak=rng.random() < 0.5)
    return TennisFormat(best_of=3, final_set_tiebreak=True)


class _TennisTimeline:
    """One match played on event time: its feed events (no seq yet), the score after each
    point with the serve counts the engine prices from, and the suspended windows."""

    def __init__(
        self,
        rng: random.Random,
        kickoff: int,
        fmt: TennisFormat,
        first: int,
        serve: tuple[float, float],
    ) -> None:
        self.rng, self.kickoff, self.fmt, self.serve = rng, kickoff, fmt, serve
        self.events: list[tuple[int, str, Payload]] = []
        self.windows: list[tuple[int, int]] = []  # markets suspended from, to
        # (ts, score after, serve points won, played): what the engine knows from then on
        self.states: list[tuple[int, TennisScore, tuple[int, int], tuple[int, int]]] = [
            (kickoff, start(first), (0, 0), (0, 0))
        ]
        self.set_ends: list[tuple[int, int]] = []  # (ts, set number) of each finished set
        self.end = kickoff

    def play(self) -> None:
        rng, t = self.rng, self.kickoff
        if rng.random() < WALKOVER_SHARE:
            self._emit(t + 60_000, "walkover", player=rng.choice(SIDES))
            self._emit(t + 61_000, "match_end", home_score=0, away_score=0)
            self.end = t + 61_000
            return
        score, won, played = self.states[0][1], [0, 0], [0, 0]
        while score.winner is None:
            t += rng.randrange(*POINT_GAP_MS)
            t = self._incidents(t)
            if rng.random() < CHALLENGE_SHARE:
                player = rng.choice(SIDES)
                t = self._window(t, "challenge", CHALLENGE_MS, player=player) + 1_000
            server = score.server
            server_won = rng.random() < self.serve[server]
            result = play_point(score, self.fmt, server_won)
            self._emit(t, "point", **self._point(server_won))
            for delay, kind, fields in score_checks(result):
                self._emit(t + delay, kind, **fields)
            if result.set_won_by is not None:
                self.set_ends.append((t, sum(score.sets) + 1))
            played[server] += 1
            won[server] += server_won
            score = result.score
            self.states.append((t, score, (won[0], won[1]), (played[0], played[1])))
            self.end = t + (1_000 if score.winner is not None else 0)
            if score.winner is None and rng.random() < RETIREMENT_PER_POINT:
                self._emit(t + 30_000, "retirement", player=rng.choice(SIDES))
                sets = {"home_score": score.sets[0], "away_score": score.sets[1]}
                self._emit(t + 31_000, "match_end", **sets)
                self.end = t + 31_000
                return

    def _incidents(self, t: int) -> int:
        """A medical timeout or rain before the next point, now and then; the time after."""
        if self.rng.random() < MEDICAL_PER_POINT:
            player = self.rng.choice(SIDES)
            t = self._window(t, "medical_timeout", MEDICAL_MS, player=player) + 20_000
        if self.rng.random() < RAIN_PER_POINT:
            t = self._window(t, "suspension", RAIN_MS, reason="rain") + 60_000
        return t

    def _window(self, t: int, kind: str, length: tuple[int, int], **fields: Any) -> int:
        end = t + self.rng.randrange(*length)
        self._emit(t, kind, state="start", **fields)
        self._emit(end, kind, state="end", **fields)
        self.windows.append((t, end))
        return end

    def _point(self, server_won: bool) -> Payload:
        fields: Payload = {"won_by": "server" if server_won else "receiver"}
        if server_won and self.rng.random() < ACE_SHARE:
            fields["detail"] = "ace"
        elif not server_won and self.rng.random() < DOUBLE_FAULT_SHARE:
            fields["detail"] = "double_fault"
        return fields

    def _emit(self, ts: int, kind: str, **fields: Any) -> None:
        self.events.append((ts, kind, fields))

    # -- reading it back ----------------------------------------------------------------------

    def with_heartbeats(self) -> list[tuple[int, str, Payload]]:
        """The events with a `clock` line every 5 s from the start to `match_end` (an event
        sharing a heartbeat's ts comes first)."""
        clocks = []
        for ts in range(self.kickoff + HEARTBEAT_MS, self.end, HEARTBEAT_MS):
            minute, second = divmod((ts - self.kickoff) // 1000, 60)
            clocks.append((ts, "clock", {"minute": minute, "second": second}))
        events = sorted(self.events, key=lambda e: e[0])
        merged: list[tuple[int, str, Payload]] = []
        i = 0
        for clock in clocks:
            while i < len(events) and events[i][0] <= clock[0]:
                merged.append(events[i])
                i += 1
            merged.append(clock)
        return merged + events[i:]

    def state_at(self, ts: int) -> tuple[TennisScore, tuple[float, float]]:
        """The score and the engine's serve estimates after the last point before `ts`."""
        i = bisect_right(self.states, ts, key=lambda s: s[0])
        _, score, won, played = self.states[max(i - 1, 0)]
        serve = (
            serve_estimate(self.serve[0], won[0], played[0]),
            serve_estimate(self.serve[1], won[1], played[1]),
        )
        return score, serve

    def suspended_at(self, ts: int) -> bool:
        return any(start <= ts <= end for start, end in self.windows)


def quote(score: TennisScore, fmt: TennisFormat, serve: tuple[float, float], margin: float) -> dict:
    """market -> selection -> (fair probability, offered price), as the engine offers them
    at `margin`."""
    book = {}
    for market, selections in fair_probabilities(score, fmt, serve).items():
        fair = tuple(selections.values())
        prices = offered_prices(implied_probabilities(fair, margin))
        book[market] = {s: (p, price) for s, p, price in zip(selections, fair, prices, strict=True)}
    return book


_BET_KINDS = (
    "prematch",
    "inplay",
    "suspended",
    "stale",
    "big_stake",
    "closed_market",
    "unknown_market",
)
_BET_WEIGHTS = (30, 46, 7, 6, 4, 5, 2)


class _TennisBettors(Bettors[_TennisTimeline]):
    """The bet lines of one tennis match."""

    KINDS = _BET_KINDS
    WEIGHTS = _BET_WEIGHTS
    FALLBACK = "prematch"

    def _prematch(self) -> Payload:
        return self._bet(self.rng.randrange(self.fixture_ts + 20_000, self.timeline.kickoff))

    def _inplay(self) -> Payload | None:
        first, last = self.timeline.kickoff + 10_000, self.timeline.end - 10_000
        return self._bet(self.rng.randrange(first, last)) if last > first else None

    def _suspended(self) -> Payload | None:
        """Placed while the markets are suspended, at the last price seen before."""
        if not self.timeline.windows:
            return None
        start, end = self.rng.choice(self.timeline.windows)
        return self._bet(self.rng.randrange(start + 300, end - 300), priced_at=start - 1)

    def _big_stake(self) -> Payload:
        return self._over_deposits(self._prematch())

    def _closed_market(self) -> Payload | None:
        """A finished set's winner market, at the price seen before its last point."""
        if not self.timeline.set_ends:
            return None
        ended, number = self.rng.choice(self.timeline.set_ends)
        ts = ended + self.rng.randrange(5_000, 60_000)
        if ts >= self.timeline.end:
            return None
        book = self._quote(ended - 1).get(f"set_{number}")
        if book is None:
            return None
        selection = self.rng.choice(list(book))
        return self._payload(ts, f"set_{number}", selection, book[selection][1])

    def _unknown_market(self) -> Payload:
        bet = self._prematch()
        return {**bet, "market": "set_9", "selection": self.rng.choice(SIDES)}

    def _bet(self, ts: int, priced_at: int | None = None) -> Payload:
        """A bet at `ts` on an open market at the price offered at `priced_at` (default `ts`)."""
        book = self._quote(ts if priced_at is None else priced_at)
        names = list(book)
        weights = [_MARKET_WEIGHT[m.split("_")[0]] for m in names]
        market = self.rng.choices(names, weights)[0]
        selections = book[market]
        chances = [max(p, 0.02) for p, _ in selections.values()]
        selection = self.rng.choices(list(selections), chances)[0]
        return self._payload(ts, market, selection, selections[selection][1])

    def _quote(self, ts: int) -> dict:
        score, serve = self.timeline.state_at(ts)
        return quote(score, self.timeline.fmt, serve, self.settings.margin)


_MARKET_WEIGHT = {"match": 8, "set": 5, "game": 3, "games": 2}  # by name up to its first _


class _TennisFaults(_FaultInjector):
    """The football simulator's faults, less its football-only kinds: a harmless line sent
    out of order (tennis has no foul or corner to spare) and a phantom goal become a cut
    line; a line stamped far from the start is a heartbeat."""

    def _out_of_order(self, anchor: int) -> bool:
        return False

    def _unknown_goal(self, anchor: int) -> bool:
        return False

    def _ts_out_of_range(self, anchor: int) -> bool:
        shift = 86_400_000 + self.rng.randrange(3_600_000, 5 * 86_400_000)
        ts = self.kickoff - shift if self.kickoff > shift else self.kickoff + shift
        return self._add(anchor, "ts_out_of_range", self._fault_line(self.match_id, ts, "clock"))
