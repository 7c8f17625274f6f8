"""The score of a tennis match, point by point: games, tiebreaks, sets and who serves.

Plain values and one pure step function (`play_point`), so the match state, the pricer,
the real-data adapter and the simulator all count a match the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class TennisFormat:
    """The rules a match is played under."""

    best_of: int = 3  # 3 or 5
    final_set_tiebreak: bool = True  # False: the final set goes on until one leads by two games
    # every other set: a tiebreak at 6-6, first to 7 points and two clear; it counts as one game

    @property
    def sets_to_win(self) -> int:
        return self.best_of // 2 + 1


@dataclass(frozen=True, slots=True)
class TennisScore:
    """Where a match stands; index 0 is the fixture's home (first) player, 1 is away."""

    sets: tuple[int, int] = (0, 0)  # sets won by player 0 and player 1
    games: tuple[int, int] = (0, 0)  # games in the current set
    points: tuple[int, int] = (0, 0)  # points in the current game or tiebreak, raw counts
    server: int = 0  # who serves the next point: 0 or 1
    set_games: tuple[tuple[int, int], ...] = ()  # the games of each finished set, in order
    winner: int | None = None  # set once the match is won

    def is_final_set(self, fmt: TennisFormat) -> bool:
        """Whether the set in play is the deciding one (both one set short of the match)."""
        last = fmt.sets_to_win - 1
        return self.sets == (last, last)

    def in_tiebreak(self, fmt: TennisFormat) -> bool:
        """Whether the next point is a tiebreak point."""
        if self.games != (6, 6) or self.winner is not None:
            return False
        return fmt.final_set_tiebreak or not self.is_final_set(fmt)

    def total_games(self) -> int:
        """Finished sets' games plus the current set's games (a tiebreak is one game)."""
        return sum(a + b for a, b in self.set_games) + sum(self.games)


@dataclass(frozen=True, slots=True)
class PointResult:
    """The score after one point and what that point finished."""

    score: TennisScore
    game_won_by: int | None  # set when this point ended a game (a tiebreak is a game)
    set_won_by: int | None
    match_won_by: int | None


def start(first_server: int) -> TennisScore:
    """The score before the first point, with `first_server` (0 or 1) to serve."""
    if first_server not in (0, 1):
        raise ValueError(f"first_server must be 0 or 1, not {first_server!r}")
    return TennisScore(server=first_server)


def tiebreak_opener(score: TennisScore) -> int:
    """Who served the first point of the tiebreak in play (its points so far tell the turn).

    Point k (0-based) of a tiebreak is served by the opener when (k + 1) // 2 is even:
    one point, then two each.
    """
    played = sum(score.points)
    return score.server if ((played + 1) // 2) % 2 == 0 else 1 - score.server


def tiebreak_server(opener: int, played: int) -> int:
    """Who serves point `played` (0-based) of a tiebreak that `opener` began."""
    return opener if ((played + 1) // 2) % 2 == 0 else 1 - opener


def _won_game(points: tuple[int, int], target: int) -> int | None:
    """The player who has won a game (or tiebreak) played to `target` points, two clear."""
    for player in (0, 1):
        if points[player] >= target and points[player] - points[1 - player] >= 2:
            return player
    return None


def _won_set(games: tuple[int, int], tiebreak_played: bool) -> int | None:
    """The player who has won the set: six games two clear, or the game after 6-6."""
    for player in (0, 1):
        mine, theirs = games[player], games[1 - player]
        if mine >= 6 and mine - theirs >= 2:
            return player
        if tiebreak_played and mine == 7 and theirs == 6:
            return player
    return None


def play_point(score: TennisScore, fmt: TennisFormat, server_won: bool) -> PointResult:
    """The score after one point won by the server (`server_won`) or the receiver.

    Raises ValueError on a match that is already won: callers check `score.winner` first.
    """
    if score.winner is not None:
        raise ValueError("the match is already won")
    tiebreak = score.in_tiebreak(fmt)
    point_winner = score.server if server_won else 1 - score.server
    points = _add(score.points, point_winner)
    game_winner = _won_game(points, 7 if tiebreak else 4)
    if game_winner is None:
        server = score.server
        if tiebreak:
            server = tiebreak_server(tiebreak_opener(score), sum(points))
        return PointResult(replace(score, points=points, server=server), None, None, None)

    # the next game is served by whoever did not open this one (a tiebreak counts as a game)
    opener = tiebreak_opener(score) if tiebreak else score.server
    next_server = 1 - opener
    games = _add(score.games, game_winner)
    set_winner = _won_set(games, tiebreak)
    if set_winner is None:
        after = replace(score, games=games, points=(0, 0), server=next_server)
        return PointResult(after, game_winner, None, None)

    sets = _add(score.sets, set_winner)
    match_winner = set_winner if sets[set_winner] == fmt.sets_to_win else None
    after = TennisScore(
        sets=sets,
        games=(0, 0),
        points=(0, 0),
        server=next_server,
        set_games=(*score.set_games, games),
        winner=match_winner,
    )
    return PointResult(after, game_winner, set_winner, match_winner)


def _add(pair: tuple[int, int], player: int) -> tuple[int, int]:
    return (pair[0] + 1, pair[1]) if player == 0 else (pair[0], pair[1] + 1)
