"""The point-based tennis pricer: known values, symmetry, monotonicity, markets summing to
one, decided states, and agreement with matches played point by point through the score."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from operators.tennis_pricing import (
    SERVE_PSEUDO_POINTS,
    TOTAL_LINES,
    fair_probabilities,
    game_win,
    match_probability,
    serve_estimate,
    tiebreak_win,
    total_games_distribution,
)
from operators.tennis_score import TennisFormat, TennisScore, play_point, start

BO3 = TennisFormat()
BO5 = TennisFormat(best_of=5, final_set_tiebreak=False)


def closed_form_game(p: float) -> float:
    """The well-known formula: win to 0, 15 or 30, or reach deuce and win from there."""
    q = 1 - p
    return p**4 * (1 + 4 * q + 10 * q**2) + 20 * p**3 * q**3 * p**2 / (1 - 2 * p * q)


def played_out(fmt: TennisFormat, serve: tuple[float, float], seed: int, n: int) -> list:
    """`n` matches played point by point through the score: the final scores."""
    rng = random.Random(seed)
    finals = []
    for _ in range(n):
        score = start(0)
        while score.winner is None:
            score = play_point(score, fmt, rng.random() < serve[score.server]).score
        finals.append(score)
    return finals


@pytest.mark.parametrize("p", [0.3, 0.5, 0.6, 0.64, 0.75, 0.9])
def test_the_game_matches_the_closed_form(p: float) -> None:
    assert game_win(p) == pytest.approx(closed_form_game(p), abs=1e-12)


def test_known_values() -> None:
    assert game_win(0.6) == pytest.approx(0.7357, abs=1e-4)
    assert game_win(0.5) == pytest.approx(0.5)
    assert tiebreak_win(0.65, 0.65) == pytest.approx(0.5)
    assert game_win(0.6, 3, 3) == pytest.approx(0.36 / 0.52)  # deuce: p² / (p² + q²)
    assert game_win(0.6, 4, 3) == pytest.approx(0.6 + 0.4 * 0.36 / 0.52)


@pytest.mark.parametrize("fmt", [BO3, BO5])
def test_symmetric_players_are_even(fmt: TennisFormat) -> None:
    for server in (0, 1):
        books = fair_probabilities(start(server), fmt, (0.64, 0.64))
        assert books["match"]["home"] == pytest.approx(0.5, abs=1e-12)
        assert books["set_1"]["home"] == pytest.approx(0.5, abs=1e-12)
        sets = books["set_betting"]
        for name, prob in sets.items():
            h, a = name.split("-")
            assert prob == pytest.approx(sets[f"{a}-{h}"], abs=1e-12)


@pytest.mark.parametrize("fmt", [BO3, BO5])
def test_the_match_price_is_monotone_in_each_serve(fmt: TennisFormat) -> None:
    grid = [0.5 + 0.03 * i for i in range(13)]
    home = [fair_probabilities(start(0), fmt, (p, 0.64))["match"]["home"] for p in grid]
    away = [fair_probabilities(start(0), fmt, (0.64, p))["match"]["home"] for p in grid]
    assert all(b > a for a, b in itertools.pairwise(home))
    assert all(b < a for a, b in itertools.pairwise(away))


def _in_play_scores(fmt: TennisFormat, seed: int) -> list[TennisScore]:
    rng = random.Random(seed)
    score, scores = start(1), []
    while score.winner is None:
        scores.append(score)
        score = play_point(score, fmt, rng.random() < 0.62).score
    return scores


@pytest.mark.parametrize(("fmt", "seed"), [(BO3, 1), (BO3, 2), (BO5, 3), (BO5, 4)])
def test_every_market_sums_to_one_at_every_point(fmt: TennisFormat, seed: int) -> None:
    for score in _in_play_scores(fmt, seed):
        books = fair_probabilities(score, fmt, (0.66, 0.6))
        set_n, game_g = sum(score.sets) + 1, sum(score.games) + 1
        assert {"match", f"set_{set_n}", f"game_{set_n}_{game_g}", "set_betting"} <= set(books)
        for market, book in books.items():
            assert sum(book.values()) == pytest.approx(1.0, abs=1e-9), (market, score)
            assert all(-1e-12 <= p <= 1 + 1e-12 for p in book.values())


def test_agrees_with_matches_played_point_by_point() -> None:
    serve = (0.66, 0.61)
    finals = played_out(BO3, serve, seed=7, n=4000)
    home_share = sum(s.winner == 0 for s in finals) / len(finals)
    books = fair_probabilities(start(0), BO3, serve)
    assert home_share == pytest.approx(books["match"]["home"], abs=0.03)  # ~4 s.e.
    mean_games = statistics.fmean(s.total_games() for s in finals)
    model = total_games_distribution(start(0), BO3, serve)
    assert mean_games == pytest.approx(sum(n * p for n, p in model.items()), abs=0.4)
    for line in TOTAL_LINES[3]:
        over_share = sum(s.total_games() > line for s in finals) / len(finals)
        assert over_share == pytest.approx(books[f"games_ou_{line}"]["over"], abs=0.03)
    two_nil = sum(s.sets == (2, 0) for s in finals) / len(finals)
    assert two_nil == pytest.approx(books["set_betting"]["2-0"], abs=0.03)


def test_a_won_match_has_no_markets() -> None:
    assert fair_probabilities(TennisScore(sets=(2, 0), winner=0), BO3, (0.6, 0.6)) == {}


def test_decided_states() -> None:
    # 1-1 in sets: the set betting is down to 2-1 / 1-2, the same as the match
    score = TennisScore(sets=(1, 1), set_games=((6, 4), (3, 6)))
    books = fair_probabilities(score, BO3, (0.65, 0.63))
    assert books["set_betting"]["2-0"] == books["set_betting"]["0-2"] == 0.0
    assert books["set_betting"]["2-1"] == pytest.approx(books["match"]["home"])
    assert books["match"]["home"] == pytest.approx(books["set_3"]["home"])
    # 19 games played: every line still open, 19.5 all but over (a set is 6 games at least)
    assert books["games_ou_19.5"]["over"] == pytest.approx(1.0)
    over = TennisScore(sets=(1, 1), games=(1, 0), set_games=((6, 4), (5, 7)))
    lines = {m for m in fair_probabilities(over, BO3, (0.65, 0.63)) if m.startswith("games_ou")}
    assert lines == {"games_ou_23.5"}  # 23 games: 19.5 and 21.5 are over already


def test_match_point_and_the_game_in_play() -> None:
    # home serving at 5-0, 40-0 in the second set, a set up
    score = TennisScore(sets=(1, 0), games=(5, 0), points=(3, 0), server=0, set_games=((6, 0),))
    books = fair_probabilities(score, BO3, (0.64, 0.64))
    assert books["game_2_6"]["home"] == pytest.approx(game_win(0.64, 3, 0))
    assert books["match"]["home"] > 0.99


def test_the_tiebreak_is_the_game_in_play() -> None:
    score = TennisScore(games=(6, 6), points=(5, 6), server=1)  # away 6-5 up in the tiebreak
    books = fair_probabilities(score, BO3, (0.64, 0.64))
    assert "game_1_13" in books
    assert books["game_1_13"]["home"] == pytest.approx(books["set_1"]["home"])
    assert books["game_1_13"]["home"] < 0.5


def test_a_final_set_without_a_tiebreak_at_ten_all() -> None:
    score = TennisScore(sets=(2, 2), games=(10, 10), server=0)
    books = fair_probabilities(score, BO5, (0.7, 0.6))
    assert books["match"]["home"] == pytest.approx(books["set_5"]["home"])
    assert books["match"]["home"] > 0.5
    assert sum(books["set_betting"].values()) == pytest.approx(1.0)


def test_serve_estimate_shrinks_toward_the_prior() -> None:
    assert serve_estimate(0.64, 0, 0) == 0.64
    assert serve_estimate(0.64, 40, 50) == pytest.approx(
        (40 + SERVE_PSEUDO_POINTS * 0.64) / (50 + SERVE_PSEUDO_POINTS)
    )
    assert 0.64 < serve_estimate(0.64, 40, 50) < 0.8
    assert serve_estimate(0.64, 8000, 10000) == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(("fmt", "seed"), [(BO3, 5), (BO5, 6)])
def test_match_probability_is_the_match_market(fmt: TennisFormat, seed: int) -> None:
    for n, score in enumerate(_in_play_scores(fmt, seed)):
        serve = (0.6 + n * 1e-4, 0.67 - n * 1e-4)
        books = fair_probabilities(score, fmt, serve)
        assert match_probability(score, fmt, serve) == pytest.approx(books["match"]["home"])
    assert match_probability(TennisScore(sets=(0, 2), winner=1), BO3, (0.6, 0.6)) == 0.0
