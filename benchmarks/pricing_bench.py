"""How long one `quote()` takes: microseconds per call over a spread of match states.

Run from the repository root: `.venv/bin/python -m benchmarks.pricing_bench`.
The states cover every minute of a match with varied rates, scores and red cards, the mix a
live flow reprices on (once a match minute plus every goal or card).
"""

from __future__ import annotations

import itertools
import timeit
from collections.abc import Callable

from operators.pricing import PricingState, fair_probabilities, quote


def match_states() -> list[PricingState]:
    rates = [(1.6, 1.1), (0.9, 2.3), (2.8, 2.4)]
    scores = [(0, 0), (1, 0), (2, 3)]
    reds = [(0, 0), (1, 0)]
    return [
        PricingState(home, away, float(minute), hs, as_, hr, ar)
        for (home, away), (hs, as_), (hr, ar), minute in itertools.product(
            rates, scores, reds, range(0, 100, 3)
        )
    ]


def microseconds_per_call(
    call: Callable[[PricingState], object], states: list[PricingState]
) -> float:
    def sweep() -> None:
        for s in states:
            call(s)

    rounds = 20
    best = min(timeit.repeat(sweep, number=rounds, repeat=5))  # best of 5: least disturbed run
    return best / (rounds * len(states)) * 1e6


def main() -> None:
    states = match_states()
    runs: dict[str, Callable[[PricingState], object]] = {
        "fair_probabilities": fair_probabilities,
        "quote (proportional)": quote,
        "quote (shin)": lambda s: quote(s, method="shin"),
    }
    print(f"{len(states)} match states, best of 5 sweeps x 20")
    for name, call in runs.items():
        print(f"{name:>22}: {microseconds_per_call(call, states):6.1f} µs/call")


if __name__ == "__main__":
    main()
