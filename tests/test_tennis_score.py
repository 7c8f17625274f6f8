"""The tennis score, point by point: deuce, tiebreaks, sets, best of 5 and who serves."""

from __future__ import annotations

import pytest

from operators.tennis_score import (
    PointResult,
    TennisFormat,
    TennisScore,
    play_point,
    start,
    tiebreak_server,
)

BO3 = TennisFormat()
BO5_NO_FINAL_TB = TennisFormat(best_of=5, final_set_tiebreak=False)


def win_points(score: TennisScore, fmt: TennisFormat, player: int, n: int) -> PointResult:
    """`n` points in a row won by `player`; the last result."""
    result = PointResult(score, None, None, None)
    for _ in range(n):
        result = play_point(result.score, fmt, server_won=result.score.server == player)
    return result


def win_games(score: TennisScore, fmt: TennisFormat, player: int, n: int) -> TennisScore:
    for _ in range(n):
        result = win_points(score, fmt, player, 4)
        assert result.game_won_by == player
        score = result.score
    return score


def trade_games(score: TennisScore, fmt: TennisFormat, n: int) -> TennisScore:
    """`n` games each, every game won by its server (holds)."""
    for _ in range(2 * n):
        score = win_games(score, fmt, score.server, 1)
    return score


def test_a_love_game_and_the_serve_passing() -> None:
    score = start(0)
    for expected in [(1, 0), (2, 0), (3, 0)]:
        result = play_point(score, BO3, server_won=True)
        assert result.score.points == expected and result.game_won_by is None
        score = result.score
    result = play_point(score, BO3, server_won=True)
    assert result.game_won_by == 0 and result.set_won_by is None
    assert result.score.games == (1, 0) and result.score.points == (0, 0)
    assert result.score.server == 1


def test_deuce_and_advantage() -> None:
    score = start(1)
    for server_won in [True, True, True, False, False, False]:  # 40-40
        score = play_point(score, BO3, server_won).score
    assert score.points == (3, 3)
    score = play_point(score, BO3, server_won=False).score  # advantage receiver (player 0)
    assert score.points == (4, 3)
    score = play_point(score, BO3, server_won=True).score  # back to deuce
    assert score.points == (4, 4) and score.games == (0, 0)
    score = play_point(score, BO3, server_won=True).score  # advantage server (player 1)
    result = play_point(score, BO3, server_won=True)
    assert result.game_won_by == 1
    assert result.score.games == (0, 1) and result.score.server == 0


def test_a_set_at_six_four_and_seven_five() -> None:
    score = trade_games(start(0), BO3, 4)  # 4-4
    score = win_games(score, BO3, 0, 2)
    assert score.sets == (1, 0) and score.set_games == ((6, 4),) and score.games == (0, 0)
    score = trade_games(score, BO3, 5)  # 5-5 in set 2
    score = win_games(score, BO3, 1, 1)
    assert score.games == (5, 6) and score.sets == (1, 0)
    score = win_games(score, BO3, 1, 1)
    assert score.sets == (1, 1) and score.set_games == ((6, 4), (5, 7))


def test_the_tiebreak_serving_order_and_its_end() -> None:
    score = trade_games(start(0), BO3, 6)  # 6-6, player 0 opened the set, so serves the tiebreak
    assert score.in_tiebreak(BO3) and score.server == 0
    servers = []
    for _ in range(12):  # 6-6 in the tiebreak: every point to the receiver
        servers.append(score.server)
        score = play_point(score, BO3, server_won=False).score
    assert servers == [0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert score.points == (6, 6) and score.games == (6, 6)
    assert score.server == 0
    result = play_point(score, BO3, server_won=False)  # 6-7 to player 1
    assert result.game_won_by is None and result.score.points == (6, 7)
    assert result.score.server == 1
    result = play_point(result.score, BO3, server_won=True)  # 6-8
    assert result.game_won_by == 1 and result.set_won_by == 1
    assert result.score.set_games == ((6, 7),) and result.score.sets == (0, 1)


def test_the_serve_after_a_tiebreak_goes_to_who_received_first_in_it() -> None:
    for first in (0, 1):
        score = trade_games(start(first), BO3, 6)
        opener = score.server
        assert opener == first
        result = win_points(score, BO3, 1 - first, 7)  # 0-7 tiebreak
        assert result.set_won_by == 1 - first
        assert result.score.server == 1 - opener
        # and the alternation carries on game by game in the new set
        next_score = win_games(result.score, BO3, 0, 1)
        assert next_score.server == opener


def test_the_serve_alternates_across_sets_without_a_tiebreak() -> None:
    score = win_games(start(0), BO3, 0, 6)  # 6-0: player 0 served games 1, 3, 5
    assert score.set_games == ((6, 0),)
    assert score.server == 0  # player 1 served game 6, so player 0 opens set 2


def test_tiebreak_server_helper() -> None:
    assert [tiebreak_server(1, k) for k in range(7)] == [1, 0, 0, 1, 1, 0, 0]


def test_a_final_set_without_a_tiebreak_goes_to_twelve_ten() -> None:
    score = TennisScore(sets=(2, 2), server=0)
    assert score.is_final_set(BO5_NO_FINAL_TB)
    score = trade_games(score, BO5_NO_FINAL_TB, 6)
    assert score.games == (6, 6) and not score.in_tiebreak(BO5_NO_FINAL_TB)
    score = trade_games(score, BO5_NO_FINAL_TB, 4)  # 10-10
    assert score.games == (10, 10) and score.winner is None
    score = win_games(score, BO5_NO_FINAL_TB, 0, 1)
    assert score.games == (11, 10) and score.winner is None
    result = win_points(score, BO5_NO_FINAL_TB, 0, 4)
    assert result.set_won_by == 0 and result.match_won_by == 0
    assert result.score.winner == 0 and result.score.sets == (3, 2)
    assert result.score.set_games == ((12, 10),)
    assert result.score.total_games() == 22


def test_the_final_set_with_a_tiebreak_when_the_format_has_one() -> None:
    fmt = TennisFormat(best_of=5, final_set_tiebreak=True)
    score = trade_games(TennisScore(sets=(2, 2), server=1), fmt, 6)
    assert score.in_tiebreak(fmt)


def test_earlier_sets_keep_their_tiebreak_in_a_no_final_tiebreak_format() -> None:
    score = trade_games(TennisScore(sets=(1, 2), server=0), BO5_NO_FINAL_TB, 6)
    assert score.in_tiebreak(BO5_NO_FINAL_TB)


def test_best_of_five_needs_three_sets() -> None:
    fmt = TennisFormat(best_of=5)
    score = start(0)
    for n in range(1, 3):
        score = win_games(score, fmt, 1, 6)
        assert score.sets == (0, n) and score.winner is None
    score = win_games(score, fmt, 0, 6)
    assert score.sets == (1, 2) and score.winner is None
    score = win_games(score, fmt, 1, 5)
    result = win_points(score, fmt, 1, 4)
    assert result.match_won_by == 1 and result.score.sets == (1, 3)
    assert result.score.total_games() == 24
    assert len(result.score.set_games) == 4


def test_best_of_three_ends_at_two_sets_and_then_refuses_points() -> None:
    score = win_games(start(1), BO3, 0, 12)
    assert score.winner == 0 and score.sets == (2, 0)
    with pytest.raises(ValueError):
        play_point(score, BO3, server_won=True)


def test_start_checks_the_server() -> None:
    with pytest.raises(ValueError):
        start(2)
