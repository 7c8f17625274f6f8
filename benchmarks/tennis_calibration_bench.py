"""Calibration of the in-play tennis match-winner price on real points (ATP 2017).

Run from the repository root: `.venv/bin/python -m benchmarks.tennis_calibration_bench`
(default file: ../shared/data/tennis/atp_main_2017.csv.gz, the point-by-point records).

Before every point of every match that walks cleanly (`operators.adapters.tennis_pbp`),
the fair probability that the home player (the first server) wins the match, scored
against who did win: the Brier score and a 10-bin reliability table, for

- the model: each player's serve-point probability estimated in play from his own serve
  points so far, `serve_estimate(TOUR_SERVE_WIN, won, played, pseudo)`, and
- the baseline: both fixed at `TOUR_SERVE_WIN`, in the same run.

The data has no pre-match probabilities, so both players start at the tour average. The
pseudo-count is picked honestly: the matches are split by date into the first and the
second half of the season; each candidate is scored on the first half (every `--tune-step`
-th point, to keep the search short), the best one is then reported on the held-out second
half, and on every point of the season. The probability is `tennis_pricing.match_probability`,
the `match` market of `fair_probabilities` (a test checks they agree); `fair_probabilities`
itself is timed at the end, in CPU microseconds per call, over the points of some matches.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from operators.adapters.tennis_pbp import Record, Walk, read_rows
from operators.tennis_pricing import (
    TOUR_SERVE_WIN,
    fair_probabilities,
    match_probability,
    serve_estimate,
)
from operators.tennis_score import TennisScore, start

DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis" / "atp_main_2017.csv.gz"
)
CANDIDATES = (20.0, 50.0, 100.0, 150.0, 250.0, 400.0, 700.0)
Match = tuple[Record, Walk]
Estimator = Callable[[tuple[int, int], tuple[int, int]], tuple[float, float]]


def load(path: Path) -> list[Match]:
    """The matches that walk cleanly, by date (then file order)."""
    walked = [(c.record, c.walk) for c in read_rows(path) if c.record and c.walk]
    return sorted(walked, key=lambda m: m[0].date)


def in_play(pseudo: float) -> Estimator:
    def estimate(won: tuple[int, int], played: tuple[int, int]) -> tuple[float, float]:
        return (
            serve_estimate(TOUR_SERVE_WIN, won[0], played[0], pseudo),
            serve_estimate(TOUR_SERVE_WIN, won[1], played[1], pseudo),
        )

    return estimate


def fixed(won: tuple[int, int], played: tuple[int, int]) -> tuple[float, float]:
    return (TOUR_SERVE_WIN, TOUR_SERVE_WIN)


def predictions(
    matches: Sequence[Match], estimate: Estimator, step: int = 1
) -> tuple[list[float], list[int]]:
    """P(home wins) before every `step`-th point of every match, and the outcomes."""
    probs: list[float] = []
    outcomes: list[int] = []
    for record, walk in matches:
        home_won = 1 if record.winner == 0 else 0
        score: TennisScore = start(0)
        won, played = [0, 0], [0, 0]
        for n, point in enumerate(walk.points):
            if n % step == 0:
                serve = estimate((won[0], won[1]), (played[0], played[1]))
                probs.append(match_probability(score, walk.fmt, serve))
                outcomes.append(home_won)
            played[score.server] += 1
            won[score.server] += point.server_won
            score = point.result.score
    return probs, outcomes


def brier(probs: Sequence[float], outcomes: Sequence[int]) -> float:
    return sum((p - y) ** 2 for p, y in zip(probs, outcomes, strict=True)) / len(probs)


def reliability(
    probs: Sequence[float], outcomes: Sequence[int]
) -> list[tuple[str, int, float, float]]:
    """(bin, points, mean predicted, observed share) for ten bins of the probability."""
    bins: list[list[tuple[float, int]]] = [[] for _ in range(10)]
    for p, y in zip(probs, outcomes, strict=True):
        bins[min(int(p * 10), 9)].append((p, y))
    return [
        (
            f"{i / 10:.1f}-{(i + 1) / 10:.1f}",
            len(b),
            sum(p for p, _ in b) / len(b) if b else float("nan"),
            sum(y for _, y in b) / len(b) if b else float("nan"),
        )
        for i, b in enumerate(bins)
    ]


def print_tables(model: tuple[list[float], list[int]], base: tuple[list[float], list[int]]) -> None:
    print(
        f"{'bin':>9} | {'model: points':>13} {'mean p':>7} {'observed':>8} |"
        f" {'baseline: points':>16} {'mean p':>7} {'observed':>8}"
    )
    for m, b in zip(reliability(*model), reliability(*base), strict=True):
        row = f"{m[0]:>9} | {m[1]:>13} {m[2]:>7.3f} {m[3]:>8.3f} |"
        print(f"{row} {b[1]:>16} {b[2]:>7.3f} {b[3]:>8.3f}")


def microseconds_per_call(matches: Sequence[Match], pseudo: float) -> float:
    """`fair_probabilities` (every market) timed over every point of `matches`, in play."""
    calls = []
    for _, walk in matches:
        score, won, played = start(0), [0, 0], [0, 0]
        for point in walk.points:
            serve = in_play(pseudo)((won[0], won[1]), (played[0], played[1]))
            calls.append((score, walk.fmt, serve))
            played[score.server] += 1
            won[score.server] += point.server_won
            score = point.result.score
    started = time.process_time()  # CPU time: the machine may be shared
    for score, fmt, serve in calls:
        fair_probabilities(score, fmt, serve)
    return (time.process_time() - started) / len(calls) * 1e6


def _joined(
    a: tuple[list[float], list[int]], b: tuple[list[float], list[int]]
) -> tuple[list[float], list[int]]:
    return a[0] + b[0], a[1] + b[1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--tune-step", type=int, default=4, help="every n-th point when tuning")
    parser.add_argument("--pseudo", type=float, help="skip the search: use this pseudo-count")
    args = parser.parse_args(argv)

    matches = load(args.file)
    half = len(matches) // 2
    first, second = matches[:half], matches[half:]
    print(
        f"{len(matches)} matches that walk cleanly; first half to "
        f"{first[-1][0].date:%d %b}, second half from {second[0][0].date:%d %b}; "
        f"TOUR_SERVE_WIN {TOUR_SERVE_WIN}"
    )

    pseudo = args.pseudo
    if pseudo is None:
        print(f"\npseudo-count on the first half (every {args.tune_step}th point):")
        base_first = brier(*predictions(first, fixed, args.tune_step))
        scores = {}
        for candidate in CANDIDATES:
            scores[candidate] = brier(*predictions(first, in_play(candidate), args.tune_step))
            print(
                f"  {candidate:>6.0f}: Brier {scores[candidate]:.5f}  (baseline {base_first:.5f})"
            )
        pseudo = min(scores, key=scores.__getitem__)
    print(f"\npseudo-count {pseudo:.0f}")

    started = time.perf_counter()
    scored = {
        name: (predictions(part, in_play(pseudo)), predictions(part, fixed))
        for name, part in (("first half", first), ("second half (held out)", second))
    }
    halves = list(scored.values())
    scored["every point"] = (
        _joined(halves[0][0], halves[1][0]),
        _joined(halves[0][1], halves[1][1]),
    )
    print(f"(every point scored by both in {time.perf_counter() - started:.0f} s)")
    for name, (model, base) in scored.items():
        print(
            f"{name}: {len(model[0])} points; Brier model {brier(*model):.5f},"
            f" baseline {brier(*base):.5f}"
        )
    print("\nreliability over every point:")
    print_tables(*scored["every point"])

    sample = matches[:: max(1, len(matches) // 40)]
    print(
        f"\nfair_probabilities: {microseconds_per_call(sample, pseudo):.0f} µs CPU per call "
        f"(every market, in-play serve estimates, {len(sample)} matches)"
    )


if __name__ == "__main__":
    main()
