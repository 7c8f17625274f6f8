"""Fair tennis prices from a point-based model: each player wins a point on his own serve
with a fixed probability, every point independent of the others.

Dynamic programming, level by level (game, tiebreak, set, match; each function says how),
from the two serve-point probabilities. A set's outcome is kept as (winner, games in the
set), whose parity says who serves first in the next one. What does not depend on the
score in play (a set not yet started) is memoized, so a call after a point only walks the
game and set in play. Plain Python and numpy; no wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from operators.tennis_score import TennisFormat, TennisScore, tiebreak_opener, tiebreak_server

# The 2017 ATP main-draw points (tests/test_tennis_pbp.py checks it): the server won 224 226
# of 352 821.
TOUR_SERVE_WIN = 0.6355
# Pseudo-count of the in-play update: how many serve points the prior weighs
# (`benchmarks/tennis_calibration_bench.py` picks it on the first half of the 2017 season).
SERVE_PSEUDO_POINTS = 100.0
ADVANTAGE_SET_CAP = 40  # games in a final set without a tiebreak followed exactly
TOTAL_LINES = {3: (19.5, 21.5, 23.5), 5: (34.5, 37.5, 40.5)}
SET_SCORES = {
    3: ("2-0", "2-1", "1-2", "0-2"),
    5: ("3-0", "3-1", "3-2", "2-3", "1-3", "0-3"),
}
_CACHE = 4096

Distribution = dict[tuple[int, int], float]  # (winner, games in the set) -> probability


def serve_estimate(
    prior: float, won: int, played: int, pseudo: float = SERVE_PSEUDO_POINTS
) -> float:
    """A player's serve-point win probability after `won` of `played` serve points: the
    points shrunk toward `prior` as if `pseudo` more had been played at it (the mean of a
    beta prior with `pseudo` points of weight, updated by a binomial count)."""
    return (won + pseudo * prior) / (played + pseudo)


# --- games and tiebreaks --------------------------------------------------------------------


def game_win(p: float, a: int = 0, b: int = 0) -> float:
    """P(the server wins the game) from points (a, b), winning each point with `p`."""
    q = 1.0 - p
    if a == 0 and b == 0:  # to love, 15 or 30, or through deuce: p² / (p² + q²) from there
        return p**4 * (1 + 4 * q + 10 * q * q) + 20 * p**3 * q**3 * p * p / (p * p + q * q)
    if a >= 4 and a - b >= 2:
        return 1.0
    if b >= 4 and b - a >= 2:
        return 0.0
    if a >= 3 and b >= 3:
        deuce = p * p / (p * p + q * q)
        if a == b:
            return deuce
        return p + q * deuce if a > b else p * deuce
    return p * game_win(p, a + 1, b) + q * game_win(p, a, b + 1)


def tiebreak_win(p_opener: float, p_other: float, a: int = 0, b: int = 0) -> float:
    """P(the opener wins the tiebreak) from points (a, b) (a: the opener's), each player
    winning a point on his own serve with his probability."""
    if a == 0 and b == 0:
        return _tiebreak_start(p_opener, p_other)
    return _tiebreak(p_opener, p_other, a, b)


@lru_cache(maxsize=_CACHE)
def _tiebreak_start(p_opener: float, p_other: float) -> float:
    return _tiebreak(p_opener, p_other, 0, 0)


def _tiebreak(p_opener: float, p_other: float, a: int, b: int) -> float:
    """A forward pass over the points on a 7 x 7 grid; from a tie at 6-6 or later the next
    two points take one serve each, so the opener wins from there with w / (w + l)."""
    both = p_opener * (1 - p_other)
    tie = both / (both + (1 - p_opener) * p_other)
    if a >= 7 and a - b >= 2:
        return 1.0
    if b >= 7 and b - a >= 2:
        return 0.0
    if a >= 6 and b >= 6:
        if a == b:
            return tie
        win = p_opener if tiebreak_server(0, a + b) == 0 else 1 - p_other
        return win + (1 - win) * tie if a > b else win * tie
    grid = [[0.0] * 7 for _ in range(7)]
    grid[a][b] = 1.0
    opener_wins = 0.0
    for total in range(a + b, 12):
        win = p_opener if tiebreak_server(0, total) == 0 else 1 - p_other
        for i in range(max(a, total - 6), min(6, total - b) + 1):
            prob = grid[i][total - i]
            if prob == 0.0:
                continue
            j = total - i
            if i == 6 and j <= 5:
                opener_wins += prob * win  # 7-j, j <= 5
            elif i == 5 and j == 6:
                opener_wins += prob * win * tie  # 6-6
            else:
                grid[i + 1][j] += prob * win
            if j == 6 and i <= 5:
                pass  # the other wins 7-i
            elif j == 5 and i == 6:
                opener_wins += prob * (1 - win) * tie  # 6-6
            else:
                grid[i][j + 1] += prob * (1 - win)
    return opener_wins


# --- sets -------------------------------------------------------------------------------------


def set_outcomes(
    serve: tuple[float, float],
    games: tuple[int, int],
    server: int,
    tiebreak: bool,
    first_game_home: float | None = None,
) -> Distribution:
    """(winner, games in the set) -> P, from `games` with `server` to serve the next game;
    `first_game_home`: P(home wins that next game) when it is already under way (it may
    be the tiebreak)."""
    if first_game_home is None:
        return _set_from(serve, games, server, tiebreak)
    out: Distribution = {}
    for won, share in ((0, first_game_home), (1, 1.0 - first_game_home)):
        after = (games[0] + 1, games[1]) if won == 0 else (games[0], games[1] + 1)
        winner = _set_winner(after, tiebreak)
        if winner is not None:
            _put(out, (winner, sum(after)), share)
            continue
        for key, prob in _set_from(serve, after, 1 - server, tiebreak).items():
            _put(out, key, share * prob)
    return out


@lru_cache(maxsize=_CACHE)
def _set_from(
    serve: tuple[float, float], games: tuple[int, int], server: int, tiebreak: bool
) -> Distribution:
    """(winner, games in the set) -> P from the start of a game at `games`, `server` to
    serve it: game by game on a 7 x 7 grid up to 6-6, then the tiebreak or the advantage
    tail."""
    home_wins = (game_win(serve[0]), 1.0 - game_win(serve[1]))  # by who serves the game
    out: Distribution = {}
    a0, b0 = games
    if (a0 >= 6 and b0 >= 6) or a0 > 6 or b0 > 6:  # past 6-6: a set without a tiebreak
        _set_end(out, serve, home_wins, games, server, tiebreak, 1.0)
        return out
    grid = [[0.0] * 7 for _ in range(7)]
    grid[a0][b0] = 1.0
    for total in range(a0 + b0, 12):
        to_serve = server if (total - a0 - b0) % 2 == 0 else 1 - server
        home = home_wins[to_serve]
        for g0 in range(max(a0, total - 6), min(6, total - b0) + 1):
            g1 = total - g0
            prob = grid[g0][g1]
            if prob == 0.0:
                continue
            if g0 + 1 >= 6 and g0 + 1 - g1 >= 2:
                _put(out, (0, total + 1), prob * home)
            elif g0 + 1 == 6 and g1 == 6:
                _set_end(out, serve, home_wins, (6, 6), 1 - to_serve, tiebreak, prob * home)
            else:
                grid[g0 + 1][g1] += prob * home
            if g1 + 1 >= 6 and g1 + 1 - g0 >= 2:
                _put(out, (1, total + 1), prob * (1.0 - home))
            elif g1 + 1 == 6 and g0 == 6:
                _set_end(out, serve, home_wins, (6, 6), 1 - to_serve, tiebreak, prob * (1 - home))
            else:
                grid[g0][g1 + 1] += prob * (1.0 - home)
    return out


def _set_end(
    out: Distribution,
    serve: tuple[float, float],
    home_wins: tuple[float, float],
    games: tuple[int, int],
    server: int,
    tiebreak: bool,
    prob: float,
) -> None:
    """A set at 6-6 (or past it, without a tiebreak), `server` to serve the next game."""
    if tiebreak:
        opener = tiebreak_win(serve[server], serve[1 - server])
        home = opener if server == 0 else 1.0 - opener
        _put(out, (0, 13), prob * home)
        _put(out, (1, 13), prob * (1.0 - home))
    else:
        _advantage_tail(out, home_wins, games, server, prob)


def _set_winner(games: tuple[int, int], tiebreak: bool) -> int | None:
    g0, g1 = games
    if (g0 >= 6 and g0 - g1 >= 2) or (tiebreak and g0 == 7 and g1 == 6):
        return 0
    if (g1 >= 6 and g1 - g0 >= 2) or (tiebreak and g1 == 7 and g0 == 6):
        return 1
    return None


def _advantage_tail(
    out: Distribution,
    home_wins: tuple[float, float],
    games: tuple[int, int],
    server: int,
    prob: float,
) -> None:
    """A set without a tiebreak past 6-6: from a tie, each pair of games (one served by
    each) ends it or ties it again, so its length is geometric; followed to
    `ADVANTAGE_SET_CAP` games, the mass still level there split as the pairs split it."""
    g0, g1 = games
    if g0 != g1:  # one ahead: the next game ends the set or levels it
        leader = 0 if g0 > g1 else 1
        ends = home_wins[server] if leader == 0 else 1.0 - home_wins[server]
        _put(out, (leader, g0 + g1 + 1), prob * ends)
        prob *= 1.0 - ends
        server, g0, g1 = 1 - server, max(g0, g1), max(g0, g1)
    first, second = home_wins[server], home_wins[1 - server]
    home_pair, away_pair = first * second, (1.0 - first) * (1.0 - second)
    total = g0 + g1
    while True:
        total += 2
        if total >= ADVANTAGE_SET_CAP or prob < 1e-15:
            home = home_pair / (home_pair + away_pair)
            _put(out, (0, total), prob * home)
            _put(out, (1, total), prob * (1.0 - home))
            return
        _put(out, (0, total), prob * home_pair)
        _put(out, (1, total), prob * away_pair)
        prob *= 1.0 - home_pair - away_pair


def _put(out: Distribution, key: tuple[int, int], prob: float) -> None:
    out[key] = out.get(key, 0.0) + prob


def fresh_set(serve: tuple[float, float], server: int, tiebreak: bool) -> Distribution:
    """A set not yet started, `server` serving its first game."""
    return _set_from(serve, (0, 0), server, tiebreak)


# --- the match --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rest:
    """The rest of a match from the start of a set: P of each final score in sets, and
    P by the number of games still to come (index n: n more games)."""

    finals: dict[tuple[int, int], float]
    totals: np.ndarray


@lru_cache(maxsize=_CACHE)
def match_from_set_start(
    serve: tuple[float, float], fmt: TennisFormat, sets: tuple[int, int], server: int
) -> Rest:
    """The rest of the match from the start of a set, `server` serving its first game."""
    need = fmt.sets_to_win
    if max(sets) == need:
        return Rest({sets: 1.0}, np.ones(1))
    final = sets == (need - 1, need - 1)
    tiebreak = fmt.final_set_tiebreak or not final
    return _after_set(serve, fmt, sets, server, _fresh_groups(serve, server, tiebreak))


Groups = tuple[tuple[int, int, float, np.ndarray], ...]  # (winner, parity, P, P by games)


def _grouped(set_dist: Distribution) -> Groups:
    """A set's outcomes grouped by winner and the parity of its games (the parity says who
    opens the next set): each group's probability and its probability by games."""
    lists: dict[tuple[int, int], list[float]] = {}
    for (winner, games), prob in set_dist.items():
        by_games = lists.setdefault((winner, games % 2), [])
        if len(by_games) <= games:
            by_games.extend([0.0] * (games + 1 - len(by_games)))
        by_games[games] += prob
    return tuple(
        (winner, parity, sum(by_games), np.array(by_games))
        for (winner, parity), by_games in lists.items()
    )


@lru_cache(maxsize=_CACHE)
def _fresh_groups(serve: tuple[float, float], server: int, tiebreak: bool) -> Groups:
    return _grouped(fresh_set(serve, server, tiebreak))


def _after_set(
    serve: tuple[float, float],
    fmt: TennisFormat,
    sets: tuple[int, int],
    server: int,
    groups: Groups,
) -> Rest:
    """The rest of the match from a set's outcomes (`server` opened the set; the totals
    count the set's own games and the later sets'), each group convolved once."""
    finals: dict[tuple[int, int], float] = {}
    parts = []
    for winner, parity, weight, by_games in groups:
        after = (sets[0] + 1, sets[1]) if winner == 0 else (sets[0], sets[1] + 1)
        rest = match_from_set_start(serve, fmt, after, server if parity == 0 else 1 - server)
        for final, prob in rest.finals.items():
            finals[final] = finals.get(final, 0.0) + weight * prob
        parts.append(np.convolve(by_games, rest.totals))
    totals = np.zeros(max(len(part) for part in parts))
    for part in parts:
        totals[: len(part)] += part
    return Rest(finals, totals)


def fair_probabilities(
    score: TennisScore, fmt: TennisFormat, serve: tuple[float, float]
) -> dict[str, dict[str, float]]:
    """Market -> selection -> fair probability for the markets still undecided at `score`.

    `serve`: (P(home wins a point on his serve), P(away wins a point on his serve)).
    Markets: `match`, `set_{n}` (the set in play), `game_{n}_{g}` (the game in play or
    next), `games_ou_{x}` (total games, a tiebreak one game, lines by best of 3 / 5) and
    `set_betting` (the score in sets, home-away). A won match has none.
    """
    if score.winner is not None:
        return {}
    model = _model(score, fmt, (float(serve[0]), float(serve[1])))
    set_n, game_g = sum(score.sets) + 1, sum(score.games) + 1
    home_match = sum(p for (h, a), p in model.rest.finals.items() if h > a)
    home_set = sum(p for (w, _), p in model.live_set.items() if w == 0)
    books: dict[str, dict[str, float]] = {
        "match": {"home": home_match, "away": 1.0 - home_match},
        f"set_{set_n}": {"home": home_set, "away": 1.0 - home_set},
        f"game_{set_n}_{game_g}": {"home": model.game_home, "away": 1.0 - model.game_home},
    }
    totals = model.rest.totals
    for line in TOTAL_LINES[fmt.best_of]:
        if score.total_games() > line:
            continue  # over already: decided
        under = float(totals[: max(0, int(line) - model.finished_games + 1)].sum())
        books[f"games_ou_{line}"] = {"over": 1.0 - under, "under": under}
    by_score = {f"{h}-{a}": p for (h, a), p in model.rest.finals.items()}
    books["set_betting"] = {name: by_score.get(name, 0.0) for name in SET_SCORES[fmt.best_of]}
    return books


def total_games_distribution(
    score: TennisScore, fmt: TennisFormat, serve: tuple[float, float]
) -> dict[int, float]:
    """The match's total games -> P (a tiebreak one game); {} once the match is won."""
    if score.winner is not None:
        return {}
    model = _model(score, fmt, serve)
    return {model.finished_games + n: float(p) for n, p in enumerate(model.rest.totals) if p > 0.0}


def match_probability(score: TennisScore, fmt: TennisFormat, serve: tuple[float, float]) -> float:
    """P(home wins the match): the `match` market of `fair_probabilities` alone, without
    the totals' convolutions (for calibration runs over every point of a season)."""
    if score.winner is not None:
        return 1.0 if score.winner == 0 else 0.0
    played = sum(score.games)
    tiebreak_set = fmt.final_set_tiebreak or not score.is_final_set(fmt)
    game_server = tiebreak_opener(score) if score.in_tiebreak(fmt) else score.server
    game_home = current_game_home(score, fmt, serve)
    live = set_outcomes(serve, score.games, game_server, tiebreak_set, game_home)
    set_first_server = game_server if played % 2 == 0 else 1 - game_server
    home = 0.0
    for (winner, games), prob in live.items():
        after = (
            (score.sets[0] + 1, score.sets[1])
            if winner == 0
            else (score.sets[0], score.sets[1] + 1)
        )
        next_server = set_first_server if games % 2 == 0 else 1 - set_first_server
        home += prob * _match_from(serve, fmt, after, next_server)
    return home


@lru_cache(maxsize=_CACHE)
def _match_from(
    serve: tuple[float, float], fmt: TennisFormat, sets: tuple[int, int], server: int
) -> float:
    """P(home wins the match) from the start of a set, `server` serving its first game."""
    need = fmt.sets_to_win
    if max(sets) == need:
        return 1.0 if sets[0] == need else 0.0
    tiebreak = fmt.final_set_tiebreak or sets != (need - 1, need - 1)
    home = 0.0
    for (winner, games), prob in fresh_set(serve, server, tiebreak).items():
        after = (sets[0] + 1, sets[1]) if winner == 0 else (sets[0], sets[1] + 1)
        home += prob * _match_from(serve, fmt, after, server if games % 2 == 0 else 1 - server)
    return home


def current_game_home(score: TennisScore, fmt: TennisFormat, serve: tuple[float, float]) -> float:
    """P(home wins the game in play, or about to start; a tiebreak is that game)."""
    if score.in_tiebreak(fmt):
        opener = tiebreak_opener(score)
        a, b = score.points[opener], score.points[1 - opener]
        opener_wins = tiebreak_win(serve[opener], serve[1 - opener], a, b)
        return opener_wins if opener == 0 else 1 - opener_wins
    server = score.server
    hold = game_win(serve[server], score.points[server], score.points[1 - server])
    return hold if server == 0 else 1 - hold


@dataclass(frozen=True, slots=True)
class _Model:
    game_home: float  # P(home wins the game in play)
    live_set: Distribution  # the set in play: (winner, its games at the end) -> P
    rest: Rest  # the totals count the set in play's games (all of them) and the later sets'
    finished_games: int  # games of the sets already finished


def _model(score: TennisScore, fmt: TennisFormat, serve: tuple[float, float]) -> _Model:
    played = sum(score.games)
    tiebreak_set = fmt.final_set_tiebreak or not score.is_final_set(fmt)
    game_home = current_game_home(score, fmt, serve)
    # who serves the game in play (a tiebreak: its opener); the set's games alternate from it
    game_server = tiebreak_opener(score) if score.in_tiebreak(fmt) else score.server
    live = set_outcomes(serve, score.games, game_server, tiebreak_set, game_home)
    set_first_server = game_server if played % 2 == 0 else 1 - game_server
    rest = _after_set(serve, fmt, score.sets, set_first_server, _grouped(live))
    return _Model(game_home, live, rest, score.total_games() - played)
